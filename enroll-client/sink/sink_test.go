//go:build !windows

package sink_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/edge-enroll/enroll/enroll-client/sink"
)

// otherGID is a group the test may give a file: any group as root (the
// tests run as root in CI), else the user's own.
func otherGID(t *testing.T) int {
	if os.Geteuid() == 0 {
		return 4242 // no such group needs to exist for chown
	}
	return os.Getgid()
}

func TestFileModeAndGroup(t *testing.T) {
	// A umask that would strip the group's read must not apply.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	gid := otherGID(t)
	for _, tc := range []struct {
		name     string
		f        sink.File
		wantMode os.FileMode
		wantGID  int
	}{
		{"default: owner only", sink.File{}, 0o600, os.Getegid()},
		{"0640 for a group", sink.File{Mode: 0o640, GID: gid, HasGID: true}, 0o640, gid},
		{"0440, own group", sink.File{Mode: 0o440}, 0o440, os.Getegid()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			tc.f.Path = filepath.Join(dir, "token")
			for _, tok := range []string{"hvs.first", "hvs.second"} { // a new file, then a replacement
				if err := tc.f.Write(tok); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(tc.f.Path)
				if err != nil || string(got) != tok {
					t.Fatalf("file holds %q, %v; want %q", got, err, tok)
				}
				fi, err := os.Stat(tc.f.Path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != tc.wantMode {
					t.Fatalf("mode %v, want %v", fi.Mode().Perm(), tc.wantMode)
				}
				if g := int(fi.Sys().(*syscall.Stat_t).Gid); g != tc.wantGID {
					t.Fatalf("group %d, want %d", g, tc.wantGID)
				}
			}
			di, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if (tc.wantMode&0o040 != 0 && di.Mode().Perm() != 0o750) || (tc.f.HasGID && int(di.Sys().(*syscall.Stat_t).Gid) != tc.wantGID) {
				t.Fatalf("directory mode %v, group %d: the sink's group must be able to enter it", di.Mode().Perm(), di.Sys().(*syscall.Stat_t).Gid)
			}
			left, _ := filepath.Glob(filepath.Join(dir, ".token*"))
			if len(left) != 0 {
				t.Fatalf("temporary files left behind: %v", left)
			}
		})
	}
}
