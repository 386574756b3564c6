package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ControlCommand, until enroll-client runs on ServiceCommand, is the `service` subcommand both binaries share:
// `service install|uninstall|start|stop|restart|status [-config FILE]
// [-system NAME] [-user NAME]`.
func ControlCommand(name, defaultConfig string, spec func(configPath string) Spec, args []string, stdout, stderr io.Writer) int {
	usage := fmt.Sprintf("usage: %s service %s [-config FILE] [-system NAME] [-user NAME]\n", name, strings.Join(Actions, "|"))
	if len(args) == 0 || !slices.Contains(Actions, args[0]) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", defaultConfig, "configuration file the service runs with")
	system := fs.String("system", "", "service system to use (default: detected)")
	userName := fs.String("user", "", "run as this user (default: "+name+" when that user exists)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	sp := spec(*cfg)
	sp.System = *system
	if *userName != "" {
		sp.UserName = *userName
	}
	err := Control(sp, args[0], stdout)
	if errors.Is(err, ErrNotRunning) {
		return 3
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
