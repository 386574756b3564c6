//go:build !windows

package tpm

import (
	"fmt"
	"os"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// DefaultPath is the kernel's TPM resource manager.
const DefaultPath = "/dev/tpmrm0"

// openTransport opens a TPM character device (/dev/tpmrm0, /dev/tpm0) or a
// unix socket that speaks the TPM command protocol (swtpm).
func openTransport(path string) (transport.TPMCloser, error) {
	if path == "" {
		path = DefaultPath
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("TPM %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket != 0 {
		return linuxudstpm.Open(path)
	}
	return linuxtpm.Open(path)
}
