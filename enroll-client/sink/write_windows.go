package sink

import (
	"os"

	"github.com/google/renameio/v2/maybe"
)

// writeFile replaces path; on Windows the directory's ACL (SYSTEM and
// Administrators, see privatedir) decides who reads the token, so mode and
// group do not apply.
func writeFile(path, _ string, data []byte, _ os.FileMode, _ int, _ bool) error {
	return maybe.WriteFile(path, data, 0o600)
}
