// Package sink hands the device's Vault token to local workloads.
package sink

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2/maybe"

	"github.com/edge-enroll/enroll/pkg/privatedir"
)

// File writes the token to a file, replacing it atomically so a workload
// never reads a half-written token. Its zero value (but Path) is an
// owner-only file, mode 0600, of the service's own group.
type File struct {
	Path string
	// Mode is the file's mode; 0 means 0600. Other users' bits are the
	// configuration's to refuse (config.Sink.FileMode).
	Mode os.FileMode
	// With HasGID, the file and its directory get group GID, so that a
	// workload in that group can enter the directory and, as Mode allows,
	// read the token. Ignored on Windows, where the directory's ACL
	// decides.
	GID    int
	HasGID bool
}

// Write replaces the file's content with token.
func (f File) Write(token string) error {
	// Group may enter (workloads in the sink's group read the token file
	// only as its mode allows; by default 0600).
	dir := filepath.Dir(f.Path)
	if err := privatedir.Make(dir, 0o750); err != nil {
		return fmt.Errorf("token sink %s: %w", f.Path, err)
	}
	mode := f.Mode
	if mode == 0 {
		mode = 0o600
	}
	if err := writeFile(f.Path, dir, []byte(token), mode, f.GID, f.HasGID); err != nil {
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
