package state_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/edge-enroll/enroll/enroll-client/state"
)

func TestReadWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	s, err := state.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := s.ReadState("device"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("ReadState on a new file = %v, want ErrNotFound", err)
	}
	if err := s.WriteState("device", []byte("v1")); err != nil {
		t.Fatalf("WriteState: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = state.Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	got, err := s.ReadState("device")
	if err != nil || string(got) != "v1" {
		t.Fatalf("ReadState after reopen = %q, %v; want v1", got, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("state file mode = %v, want 0600", perm)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := state.Open(path); !errors.Is(err, state.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestCorruptFileIsRefused(t *testing.T) {
	tests := []struct {
		name   string
		damage func(path string) error
	}{
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("not a database at all, just text"), 0o600) }},
		{"truncated", func(p string) error { return os.Truncate(p, 100) }},
		{"cut to a third", func(p string) error {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, fi.Size()/3)
		}},
		{"zeroed header", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(make([]byte, 8192), 0)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			s, err := state.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.WriteState("device", []byte("v1")); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if err := tt.damage(path); err != nil {
				t.Fatal(err)
			}
			s, err = state.Open(path)
			if err == nil {
				s.Close()
				t.Fatal("Open of a damaged file succeeded")
			}
			if !errors.Is(err, state.ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
		})
	}
}

// FuzzOpen: whatever bytes the state file holds, Open returns a store or an
// error; it never crashes the process.
func FuzzOpen(f *testing.F) {
	seed := filepath.Join(f.TempDir(), "seed.db")
	s, err := state.Open(seed)
	if err != nil {
		f.Fatal(err)
	}
	_ = s.WriteState("device", []byte(`{"version":1}`))
	s.Close()
	good, _ := os.ReadFile(seed)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("not a database"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := state.Open(path)
		if err != nil {
			return
		}
		_, _ = s.ReadState("device")
		s.Close()
	})
}

func TestInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if used, err := state.InUse(path); used || err != nil {
		t.Fatalf("InUse before the file exists = %v, %v; want false, nil", used, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("InUse created the file: %v", err)
	}
	s, err := state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if used, err := state.InUse(path); !used || err != nil {
		t.Fatalf("InUse while open = %v, %v; want true, nil", used, err)
	}
	s.Close()
	if used, err := state.InUse(path); used || err != nil {
		t.Fatalf("InUse after Close = %v, %v; want false, nil", used, err)
	}
	// InUse itself leaves the file free for the daemon.
	s, err = state.Open(path)
	if err != nil {
		t.Fatalf("Open after InUse: %v", err)
	}
	s.Close()
}
