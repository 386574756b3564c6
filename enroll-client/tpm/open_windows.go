//go:build windows

package tpm

import (
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/windowstpm"
)

// DefaultPath names the Windows TPM Base Services; there is no other path.
const DefaultPath = "tbs"

// openTransport opens the TPM through TBS.
func openTransport(string) (transport.TPMCloser, error) {
	return windowstpm.Open()
}
