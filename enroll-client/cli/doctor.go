package cli

import (
	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/enroll-client/doctor"
	"github.com/edge-enroll/enroll/pkg/cmdline"
)

func doctorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this device's setup online: config, bundle, CAs, clock, files, TPM",
		Long: `Check, online, what this device needs to enroll and stay enrolled: the
configuration and bundle (as run reads them), the server's and Vault's
certificates by a real handshake with the bundle's CAs, the clock against the
server's, the state and sink files' permissions, and the TPM. One line per
check with its fix; exit 1 when any check fails.`,
		Example: "  enroll-client doctor -config /etc/enroll-client/config.yaml\n" +
			"  enroll-client doctor -json",
		Args: cobra.NoArgs,
	}
	path := configFlag(cmd)
	asJSON := cmdline.JSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if code := doctor.Run(cmd.Context(), doctor.Options{ConfigPath: *path}, cmd.OutOrStdout(), *asJSON); code != 0 {
			return cmdline.Exit(code)
		}
		return nil
	}
	return cmd
}
