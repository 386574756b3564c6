package doctor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/enroll-client/state"
)

const isWindows = runtime.GOOS == "windows"

// checkState looks at the state directory and file as the daemon needs
// them: the service's own (0700 and 0600), and a file bbolt can open.
func checkState(cfg config.File) []Result {
	dir := filepath.Dir(cfg.StatePath)
	out := []Result{checkPrivateDir("state directory", dir, 0o700)}
	const name = "state"
	fi, err := os.Stat(cfg.StatePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return append(out, res(OK, name, cfg.StatePath+" not created yet: the first run creates it", ""))
	case err != nil:
		return append(out, res(Fail, name, err.Error(), "make state_path readable by the service's user"))
	case !isWindows && fi.Mode().Perm()&0o077 != 0:
		return append(out, res(Fail, name, fmt.Sprintf("%s has mode %v: other users can read the device's credentials", cfg.StatePath, fi.Mode().Perm()),
			"chmod 600 "+cfg.StatePath))
	}
	if r, bad := notOwned(name, cfg.StatePath, fi); bad {
		out = append(out, r)
	}
	running, err := state.InUse(cfg.StatePath)
	switch {
	case err != nil:
		return append(out, res(Fail, name, err.Error(), "the state file is damaged: `enroll-client reset-state` moves it aside (see README: the device then waits for an approval)"))
	case running:
		return append(out, res(OK, name, cfg.StatePath+" is held by the running daemon", ""))
	}
	return append(out, res(OK, name, cfg.StatePath+" readable; no daemon is running (`enroll-client status` says more)", ""))
}

// checkPrivateDir checks a directory only the service may use: never
// shared (world-writable or sticky: the service refuses it), and at most
// mode (the service tightens a looser one itself: a warning).
func checkPrivateDir(name, dir string, mode os.FileMode) Result {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return res(OK, name, dir+" not created yet: the daemon creates it", "")
	case err != nil:
		return res(Fail, name, err.Error(), "make "+dir+" accessible to the service's user")
	case !fi.IsDir():
		return res(Fail, name, dir+" is not a directory", "point the configuration at a directory of the service's own")
	case isWindows:
		return res(OK, name, dir+" (its ACL is set by the service: SYSTEM and Administrators)", "")
	case fi.Mode()&os.ModeSticky != 0 || fi.Mode().Perm()&0o002 != 0:
		return res(Fail, name, fmt.Sprintf("%s is shared (mode %v): the service refuses it", dir, fi.Mode()),
			"use a directory of the service's own, not one like /tmp")
	case fi.Mode().Perm()&^mode != 0:
		// privatedir tightens such a directory itself, when the daemon
		// next starts (state) or writes a token (sinks).
		return res(Warn, name, fmt.Sprintf("%s has mode %v: other users can enter it until the daemon tightens it to %o", dir, fi.Mode().Perm(), mode),
			fmt.Sprintf("chmod %o %s", mode, dir))
	}
	if r, bad := notOwned(name, dir, fi); bad {
		return r
	}
	return res(OK, name, fmt.Sprintf("%s mode %v", dir, fi.Mode().Perm()), "")
}

// checkSinks looks at each sink's directory and token file against its
// configured mode and group.
func checkSinks(cfg config.File) []Result {
	var out []Result
	for i, s := range cfg.Sinks {
		name := fmt.Sprintf("sink %d", i)
		out = append(out, checkPrivateDir(name+" directory", filepath.Dir(s.Path), 0o750))
		mode, _ := s.FileMode() // validated with the configuration
		gid, _ := s.GID()
		fi, err := os.Stat(s.Path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			out = append(out, res(OK, name, s.Path+" not written yet: the daemon writes it with the device's first token", ""))
			continue
		case err != nil:
			out = append(out, res(Fail, name, err.Error(), "make the sink's path usable by the service's user"))
			continue
		case isWindows:
			out = append(out, res(OK, name, s.Path+" (readable as its directory's ACL allows)", ""))
			continue
		case fi.Mode().Perm()&0o007 != 0:
			out = append(out, res(Fail, name, fmt.Sprintf("%s has mode %v: every user of the device can read the token", s.Path, fi.Mode().Perm()),
				fmt.Sprintf("chmod %o %s (the daemon writes it so from the next token on)", mode, s.Path)))
			continue
		case fi.Mode().Perm() != mode:
			out = append(out, res(Warn, name, fmt.Sprintf("%s has mode %v, the configuration says %v", s.Path, fi.Mode().Perm(), mode),
				"the daemon applies the configured mode with the next token; restart it to apply it now"))
			continue
		}
		if _, fileGID, ok := owner(fi); ok && gid >= 0 && fileGID != gid {
			out = append(out, res(Warn, name, fmt.Sprintf("%s has group %d, the configuration says %d", s.Path, fileGID, gid),
				"the daemon applies the configured group with the next token; restart it to apply it now"))
			continue
		}
		out = append(out, res(OK, name, fmt.Sprintf("%s mode %v", s.Path, fi.Mode().Perm()), ""))
	}
	return out
}

// notOwned warns about a file or directory that is not the user's running
// the doctor (who should be the service's user, or root).
func notOwned(name, path string, fi os.FileInfo) (Result, bool) {
	uid, _, ok := owner(fi)
	if !ok || uid == os.Geteuid() || os.Geteuid() == 0 && uid == 0 {
		return Result{}, false
	}
	return res(Warn, name, fmt.Sprintf("%s is owned by uid %d, not by the user running doctor (uid %d)", path, uid, os.Geteuid()),
		"run doctor as the service's user, or chown "+path+" to it"), true
}
