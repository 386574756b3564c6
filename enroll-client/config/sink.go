package config

import (
	"fmt"
	"os"
	"os/user"
	"runtime"
	"strconv"
)

// DefaultSinkMode is a token file's mode unless its sink says otherwise:
// the service's user alone.
const DefaultSinkMode os.FileMode = 0o600

// FileMode is the sink's mode: Mode parsed as octal, or DefaultSinkMode.
// A token file may be shared with a group, never with every user, and is
// never executable.
func (s Sink) FileMode() (os.FileMode, error) {
	if s.Mode == "" {
		return DefaultSinkMode, nil
	}
	v, err := strconv.ParseUint(s.Mode, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("want an octal mode such as \"0640\", got %q", s.Mode)
	}
	m := os.FileMode(v)
	switch {
	case m&^0o777 != 0:
		return 0, fmt.Errorf("%q sets special bits; want permission bits only, such as \"0640\"", s.Mode)
	case m&0o007 != 0:
		return 0, fmt.Errorf("%q lets every user of the device read or write the token; at most \"0660\" (owner and group)", s.Mode)
	case m&0o111 != 0:
		return 0, fmt.Errorf("%q makes the token file executable; at most \"0660\"", s.Mode)
	case m&0o400 == 0:
		return 0, fmt.Errorf("%q does not let the service read its own token file; at least \"0400\"", s.Mode)
	}
	return m, nil
}

// GID is the sink's group ID, or -1 when it names none. A number is taken
// as it is; a name must exist on the device.
func (s Sink) GID() (int, error) {
	if s.Group == "" {
		return -1, nil
	}
	if runtime.GOOS == "windows" {
		return 0, fmt.Errorf("not supported on Windows (the sink directory's ACL decides who may read it); remove it")
	}
	if id, err := strconv.Atoi(s.Group); err == nil {
		if id < 0 {
			return 0, fmt.Errorf("group ID %d is negative", id)
		}
		return id, nil
	}
	g, err := user.LookupGroup(s.Group)
	if err != nil {
		return 0, fmt.Errorf("no group %q on this device (create it, or give a numeric group ID): %v", s.Group, err)
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q has the non-numeric ID %q", s.Group, g.Gid)
	}
	return id, nil
}
