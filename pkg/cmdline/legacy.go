package cmdline

import (
	"context"
	"fmt"
	"io"

	"github.com/edge-enroll/enroll/pkg/version"
)

// The hand-written dispatcher, until every binary runs on Execute.

// Command runs one subcommand and returns the process exit code.
type Command func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// Program is a binary's command line.
type Program struct {
	Name     string
	Usage    string
	Commands map[string]Command
}

// Run dispatches args[0]; 2 is the exit code of a usage error.
func (p Program) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, p.Usage)
		return 2
	}
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version.String(p.Name))
		return 0
	case "help", "-h", "--help":
		// help COMMAND is that command's own -h.
		if cmd, ok := p.Commands[safeArg(args, 1)]; ok && args[0] == "help" {
			cmd(ctx, []string{"-h"}, stdout, stdout)
			return 0
		}
		fmt.Fprint(stdout, p.Usage)
		return 0
	}
	cmd, ok := p.Commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n%s", p.Name, args[0], p.Usage)
		return 2
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

func safeArg(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}
