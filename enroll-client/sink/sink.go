// Package sink hands the device's Vault token to local workloads.
package sink

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/google/renameio/v2/maybe"

	"github.com/edge-enroll/enroll/pkg/privatedir"
)

// File writes the token to a file, owner-only, replacing it atomically so a
// workload never reads a half-written token.
type File struct{ Path string }

// Write replaces the file's content with token.
func (f File) Write(token string) error {
	// Group may enter (workloads in the service's group read the token
	// file only if its mode allows; it is 0600).
	if err := privatedir.Make(filepath.Dir(f.Path), 0o750); err != nil {
		return fmt.Errorf("token sink %s: %w", f.Path, err)
	}
	if err := maybe.WriteFile(f.Path, []byte(token), 0o600); err != nil {
		return fmt.Errorf("token sink %s: %w", f.Path, err)
	}
	return nil
}

// String names the sink in logs.
func (f File) String() string { return "file:" + f.Path }

// StatusFile publishes the device's status as JSON, replaced atomically, so
// that `enroll-client status` can read it while the daemon holds the state
// file. It holds no secret; it is owner-only all the same.
type StatusFile struct{ Path string }

// WriteStatus replaces the file with v encoded as JSON.
func (f StatusFile) WriteStatus(v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := maybe.WriteFile(f.Path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("status file %s: %w", f.Path, err)
	}
	return nil
}
