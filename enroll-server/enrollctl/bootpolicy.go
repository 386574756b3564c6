package enrollctl

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/pkg/wire"
)

func bootPolicyCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "boot-policy",
		Short: "Measured-boot policies of TPM fleets",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(bootPolicyLearnCmd(env))
	return cmd
}

func bootPolicyLearnCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "learn",
		Short: "Print a boot policy (YAML) made from a reference device's last accepted boot",
		Long: `Print a boot policy made from the last boot the server accepted from a
reference device: its Secure Boot state (required when it was on) and the
boot applications measured into PCR 4. Paste it under the fleet's tpm
section of enroll-server's configuration; every device of the fleet must
then boot the same boot loaders and kernels. The device must have sent its
TCG event log (enroll-client's tpm.event_log) at its last attestation.`,
		Example: "  enrollctl boot-policy learn -fleet acme -from-device sensor-1 >> boot-policy.yaml",
		Args:    cobra.NoArgs,
	}
	fs := cmd.Flags()
	fleet := fs.String("fleet", "", "fleet (required)")
	device := fs.String("from-device", "", "the reference device (required)")
	sf := addServerFlags(fs)
	required(cmd, "fleet", "from-device")
	return withRun(env, cmd, func(ctx context.Context, env Env, _ []string) error {
		if err := validRef(*fleet, *device); err != nil {
			return err
		}
		var d wire.Device
		if err := sf.call(ctx, env, http.MethodGet, wire.AdminDevicePath(*fleet, *device, ""), nil, nil, &d); err != nil {
			return err
		}
		out, err := learnedPolicy(d)
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(env.Stdout, out)
		return err
	})
}

// learnedPolicy writes the boot policy a device's last accepted boot
// makes, as the YAML the server's configuration reads.
func learnedPolicy(d wire.Device) (string, error) {
	b := d.Boot
	if b == nil {
		return "", fmt.Errorf("device %s/%s has no accepted measured boot: it sent no event log with its last attestation", d.Fleet, d.ID)
	}
	if len(b.PCR4) == 0 {
		return "", errors.New("the device's event log shows no boot application in PCR 4: nothing to learn")
	}
	secureBoot := "any"
	if b.SecureBoot == "enabled" {
		secureBoot = "required"
	}
	var s strings.Builder
	fmt.Fprintf(&s, "# Learned from device %s of fleet %s (boot accepted %s, Secure Boot %s).\n", d.ID, d.Fleet, b.At.UTC().Format("2006-01-02T15:04:05Z"), b.SecureBoot)
	fmt.Fprintf(&s, "# Paste under fleets[name=%s].tpm in enroll-server's configuration.\n", d.Fleet)
	fmt.Fprintf(&s, "boot_policy:\n  secure_boot: %s\n  pcr4_allowed:\n", secureBoot)
	seen := map[string]bool{}
	for _, h := range b.PCR4 {
		h = strings.ToLower(h)
		if raw, err := hex.DecodeString(h); err != nil || len(raw) != 32 {
			return "", fmt.Errorf("the server sent a PCR 4 digest that is not SHA-256 hex: %q", h)
		}
		if !seen[h] {
			seen[h] = true
			fmt.Fprintf(&s, "    - %q\n", h)
		}
	}
	return s.String(), nil
}
