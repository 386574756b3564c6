package daemon

import (
	"errors"
	"os/user"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/pkg/cmdline"
)

// serviceHelp is what each action of `service` does.
var serviceHelp = map[string]string{
	"install":   "Install the service (it starts at boot) with this configuration file",
	"uninstall": "Remove the service",
	"start":     "Start the installed service",
	"stop":      "Stop the service",
	"restart":   "Restart the service",
	"status":    "Show whether the service runs (exit 3 when it does not)",
}

// ServiceCommand is the `service` command both binaries share:
// `service install|uninstall|start|stop|restart|status [-config FILE]
// [-system NAME] [-user NAME]`; status takes -json too.
func ServiceCommand(name, defaultConfig string, spec func(configPath string) Spec) *cobra.Command {
	group := cmdline.Group(&cobra.Command{
		Use:   "service",
		Short: "Install, remove, start, stop, restart the service, or show its status",
		Long: "Manage " + name + " as a system service (systemd, SysV init, or the Windows service\n" +
			"manager): the service runs `" + name + " run -config FILE`.",
		Example: "  " + name + " service install -config " + defaultConfig + "\n" +
			"  " + name + " service status -json",
	})
	for _, action := range Actions {
		cmd := &cobra.Command{
			Use:     action,
			Short:   serviceHelp[action],
			Args:    cobra.NoArgs,
			Example: "  " + name + " service " + action + " -config " + defaultConfig,
		}
		cfg := cmd.Flags().String("config", defaultConfig, "configuration file the service runs with")
		system := cmd.Flags().String("system", "", "service system to use (default: detected)")
		userName := cmd.Flags().String("user", "", "run as this user (default: "+name+" when that user exists)")
		var asJSON *bool
		if action == "status" {
			asJSON = cmdline.JSONFlag(cmd)
		}
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			sp := spec(*cfg)
			sp.System = *system
			if *userName != "" {
				sp.UserName = *userName
			}
			if asJSON != nil && *asJSON {
				st, err := Status(sp)
				if err != nil {
					return err
				}
				if err := cmdline.WriteJSON(cmd.OutOrStdout(), st); err != nil {
					return err
				}
				if !st.Running() {
					return cmdline.Exit(3)
				}
				return nil
			}
			err := Control(sp, cmd.Name(), cmd.OutOrStdout())
			if errors.Is(err, ErrNotRunning) {
				return cmdline.Exit(3)
			}
			if err != nil {
				return err
			}
			return nil
		}
		group.AddCommand(cmd)
	}
	return group
}

// DefaultUser returns name when such a user exists on Linux (the packages
// create it), else "" (the service manager's default account: root, or
// LocalSystem on Windows).
func DefaultUser(name string) string {
	if runtime.GOOS != "linux" {
		return ""
	}
	if _, err := user.Lookup(name); err != nil {
		return ""
	}
	return name
}
