//go:build !windows

package privatedir_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edge-enroll/enroll/pkg/privatedir"
)

func TestMakeTightensAnExistingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := privatedir.Make(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
}

func TestMakeRefusesASharedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := privatedir.Make(dir, 0o700); err == nil {
		t.Fatal("Make changed a shared directory instead of refusing it")
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSticky == 0 {
		t.Fatalf("the shared directory was changed: %v", fi.Mode())
	}
}
