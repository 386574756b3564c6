package config

import (
	"fmt"
	"os"
	"runtime"

	"github.com/edge-enroll/enroll/pkg/bundle"
)

// ReadBundle reads and validates the bootstrap bundle at path, as
// `enroll-client run` does before anything else (doctor and check-config
// call this same function, so they never pass a bundle run refuses).
func ReadBundle(path string) (*bundle.Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	b, err := bundle.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	// The fleet's shared secret ID must not be readable by every user of
	// the device (on Windows, the installer's ACL keeps it to SYSTEM).
	if fi, err := f.Stat(); err == nil && runtime.GOOS != "windows" && b.SecretID != "" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("bundle %s: mode %v lets other users read the fleet's bootstrap secret; chmod 600 it (owned by the service's user)", path, fi.Mode().Perm())
	}
	return b, nil
}
