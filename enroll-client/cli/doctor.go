package cli

import (
	"context"
	"flag"
	"io"

	"github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/enroll-client/doctor"
)

// doctorCommand is `enroll-client doctor [-config FILE]`.
func doctorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	return doctor.Run(ctx, doctor.Options{ConfigPath: *path}, stdout)
}
