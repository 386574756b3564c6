package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/cmdline"
)

// openTPM opens the TPM as configured: nil when tpm.mode is off, or auto
// and the machine has none.
func openTPM(cfg config.File, b *bundle.Bundle, kv tpm.KV, log *slog.Logger) (*tpm.Device, error) {
	if cfg.TPM.Mode == "off" {
		return nil, nil
	}
	d, err := tpm.Open(cfg.TPM.Path, kv, cfg.TPM.EK, b.TPMEK...)
	if err != nil {
		if cfg.TPM.Mode == "auto" && (errors.Is(err, fs.ErrNotExist) || runtime.GOOS == "windows") {
			log.Info("no TPM; the device enrolls without attestation and its state is not sealed", "tpm_path", cfg.TPM.Path)
			return nil, nil
		}
		return nil, fmt.Errorf("TPM (tpm.mode %s, tpm.path %s): %w", cfg.TPM.Mode, cfg.TPM.Path, err)
	}
	d.SetEventLog(cfg.TPM.EventLog)
	return d, nil
}

// sealerFor unseals the state's data key, explaining what to do when the
// state was made on other hardware.
func sealerFor(d *tpm.Device, cfg config.File, fleet string) (*tpm.Sealer, error) {
	s, err := d.NewSealer(cfg.DeviceID + "/" + fleet)
	if errors.Is(err, tpm.ErrForeignTPM) {
		return nil, fmt.Errorf("%w\nThe device will not use state it cannot prove is its own. If this is the device's\n"+
			"own disk and its TPM was cleared, run `enroll-client reset-state -force -config <file>`;\n"+
			"its request then waits until an administrator approves it (`enrollctl approve`)", err)
	}
	return s, err
}

// tpmInfo is what tpm-info prints.
type tpmInfo struct {
	Path          string `json:"tpm"`
	EK            string `json:"ek"`
	EKSlot        string `json:"ek_slot"` // the EK profile's L-1, H-3...
	EKCertificate bool   `json:"ek_certificate"`
	EKChain       int    `json:"ek_chain"` // intermediates found in NV
	EKHash        string `json:"ek_hash"`
}

// tpmInfoCmd prints what the device's TPM presents: the EK an
// administrator puts on a fleet's allow-list when the TPM has no EK
// certificate.
func tpmInfoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tpm-info",
		Short: "Show the TPM's endorsement key hash (for a fleet's EK allow-list)",
		Long: `Show the TPM configured under tpm: its endorsement key's kind, whether it
has an EK certificate, and the EK hash an administrator puts on a fleet's
tpm.ek_allow_list when it has none.`,
		Example: "  enroll-client tpm-info -config /etc/enroll-client/config.yaml\n" +
			"  enroll-client tpm-info -json",
		Args: cobra.NoArgs,
	}
	path := configFlag(cmd)
	asJSON := cmdline.JSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, b, err := loadConfig(*path)
		if err != nil {
			return err
		}
		if cfg.TPM.Mode == "off" {
			return errors.New("tpm.mode is off")
		}
		d, err := tpm.Open(cfg.TPM.Path, nil, cfg.TPM.EK, b.TPMEK...)
		if err != nil {
			return err
		}
		defer d.Close()
		h, err := d.EKHash()
		if err != nil {
			return err
		}
		info := tpmInfo{Path: cfg.TPM.Path, EK: d.EKKind(), EKSlot: d.EKSlot(), EKCertificate: d.HasEKCert(), EKChain: d.EKChainLen(), EKHash: h}
		if *asJSON {
			return cmdline.WriteJSON(cmd.OutOrStdout(), info)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "tpm: %s\nek: %s (%s)\nek_certificate: %v\nek_chain: %d\nek_hash: %s\n",
			info.Path, info.EK, info.EKSlot, info.EKCertificate, info.EKChain, info.EKHash)
		return nil
	}
	return cmd
}
