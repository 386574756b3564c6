package doctor

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/edge-enroll/enroll/enroll-client/config"
)

// checkTPM opens the TPM as run would: required must work, auto may find
// none; an EK without a certificate needs the fleet's allow-list.
func checkTPM(cfg config.File, opts Options) Result {
	const name = "tpm"
	if cfg.TPM.Mode == "off" {
		return res(OK, name, "tpm.mode off: the device enrolls without attestation", "")
	}
	d, err := opts.OpenTPM(cfg.TPM.Path, cfg.TPM.EK)
	if err != nil {
		if cfg.TPM.Mode == "auto" && (errors.Is(err, fs.ErrNotExist) || isWindows) {
			return res(OK, name, fmt.Sprintf("no TPM at %s (tpm.mode auto): the device enrolls without attestation and its state is not sealed", cfg.TPM.Path), "")
		}
		return res(Fail, name, fmt.Sprintf("tpm.mode %s, tpm.path %s: %v", cfg.TPM.Mode, cfg.TPM.Path, err),
			"check tpm.path, that the TPM is enabled in the firmware and its driver loaded, and that the service's user may open it (on Linux, the tss group)")
	}
	defer d.Close()
	if !d.HasEKCert() {
		return res(Warn, name, fmt.Sprintf("%s: EK %s, no EK certificate in the TPM", cfg.TPM.Path, d.EKKind()),
			"a fleet with tpm.mode optional or required must allow-list this device's EK: give its ek_hash (enroll-client tpm-info) to the fleet's administrator")
	}
	return res(OK, name, fmt.Sprintf("%s: EK %s with its certificate", cfg.TPM.Path, d.EKKind()), "")
}
