package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"runtime"

	"github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/enroll-client/tpm"
)

// openTPM opens the TPM as configured: nil when tpm.mode is off, or auto
// and the machine has none.
func openTPM(cfg config.File, kv tpm.KV, log *slog.Logger) (*tpm.Device, error) {
	if cfg.TPM.Mode == "off" {
		return nil, nil
	}
	d, err := tpm.Open(cfg.TPM.Path, kv, cfg.TPM.EK)
	if err != nil {
		if cfg.TPM.Mode == "auto" && (errors.Is(err, fs.ErrNotExist) || runtime.GOOS == "windows") {
			log.Info("no TPM; the device enrolls without attestation and its state is not sealed", "tpm_path", cfg.TPM.Path)
			return nil, nil
		}
		return nil, fmt.Errorf("TPM (tpm.mode %s, tpm.path %s): %w", cfg.TPM.Mode, cfg.TPM.Path, err)
	}
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

// tpmInfo prints what the device's TPM presents: the EK an administrator
// puts on a fleet's allow-list when the TPM has no EK certificate.
func tpmInfo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tpm-info", flag.ContinueOnError)
	cfg, _, ok := loadConfig(fs, args, stderr)
	if !ok {
		return 1
	}
	if cfg.TPM.Mode == "off" {
		fmt.Fprintln(stderr, "enroll-client: tpm.mode is off")
		return 1
	}
	d, err := tpm.Open(cfg.TPM.Path, nil, cfg.TPM.EK)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return 1
	}
	defer d.Close()
	h, err := d.EKHash()
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return 1
	}
	fmt.Fprintf(stdout, "tpm: %s\nek: %s\nek_certificate: %v\nek_hash: %s\n", cfg.TPM.Path, d.EKKind(), d.HasEKCert(), h)
	return 0
}
