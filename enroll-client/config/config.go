// Package config loads enroll-client's configuration file: strict YAML (an
// unknown key is an error naming it), a default for every key, a few
// environment overrides, and validation that names the key at fault.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/pkg/ekprofile"
	"github.com/edge-enroll/enroll/pkg/strictyaml"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// File is the configuration as written by an operator.
type File struct {
	// DeviceID identifies the device; empty means the host name.
	DeviceID   string `yaml:"device_id"`
	BundlePath string `yaml:"bundle_path"`
	// PreprovisionedPath is where an orchestrator may inject a wrapped
	// credential for this device; it is used once and deleted.
	PreprovisionedPath string      `yaml:"preprovisioned_path"`
	StatePath          string      `yaml:"state_path"`
	Sinks              []Sink      `yaml:"sinks"`
	Log                Log         `yaml:"log"`
	Timeouts           Timeouts    `yaml:"timeouts"`
	TPM                TPM         `yaml:"tpm"`
	Metrics            Metrics     `yaml:"metrics"`
	Diagnostics        Diagnostics `yaml:"diagnostics"`
}

// Diagnostics configures the optional health listener: /livez, /readyz
// and /metrics, for a service manager or an orchestrator to probe.
type Diagnostics struct {
	// Listen is host:port; empty means no listener, and an empty host
	// means loopback. Its answers hold no secret, but keep it on loopback
	// unless the network around the device is trusted.
	Listen string `yaml:"listen"`
}

// Addr is the address to listen on: Listen, on loopback when it names no
// host.
func (d Diagnostics) Addr() string {
	host, port, err := net.SplitHostPort(d.Listen)
	if err != nil || host != "" {
		return d.Listen
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// Metrics configures the optional Prometheus listener.
type Metrics struct {
	// Listen is host:port for /metrics; empty means no listener. Keep it
	// on loopback unless the network around the device is trusted.
	Listen string `yaml:"listen"`
}

// TPM says whether and how the device uses its TPM 2.0.
type TPM struct {
	// Mode is auto (use the TPM when there is one), required (refuse to
	// start without one) or off.
	Mode string `yaml:"mode"`
	// Path is the TPM: a character device (/dev/tpmrm0) or a unix socket
	// speaking the TPM command protocol (swtpm). On Windows the TPM is
	// reached through TBS and Path is ignored.
	Path string `yaml:"path"`
	// EK is the endorsement key to use: auto (the first kind of the
	// fleet's preference, from its bundle, that the TPM holds a
	// certificate for), or one kind: rsa2048 (or rsa), ecc256 (or ecc),
	// ecc384, rsa3072.
	EK string `yaml:"ek"`
	// EventLog is the firmware's TCG event log, sent with every quote so
	// that the server can replay the measured boot (Linux:
	// /sys/kernel/security/tpm0/binary_bios_measurements). A missing
	// file means the device has none; empty sends none.
	EventLog string `yaml:"event_log"`
}

// Sink is a place the token is handed to workloads.
type Sink struct {
	Path string `yaml:"path"`
	// Mode is the token file's mode in octal ("0640"); empty means 0600.
	// Other users may never read or write it.
	Mode string `yaml:"mode"`
	// Group is the token file's group, by name or numeric ID, so that a
	// workload running as another user in that group can read it (with
	// a mode such as 0640). Empty: the service's own group. Not on
	// Windows, where the directory's ACL decides.
	Group string `yaml:"group"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Timeouts bound each network call.
type Timeouts struct {
	Vault  time.Duration `yaml:"vault"`
	Server time.Duration `yaml:"server"`
}

// Default returns the configuration with every default filled in.
func Default() File {
	return File{
		BundlePath:         defaultBundle,
		PreprovisionedPath: defaultPreprovisioned,
		StatePath:          defaultState,
		Sinks:              []Sink{{Path: defaultSink, Mode: "0600"}},
		Log:                Log{Level: "info", Format: "text"},
		Timeouts:           Timeouts{Vault: 15 * time.Second, Server: 15 * time.Second},
		TPM:                TPM{Mode: "auto", Path: defaultTPM, EK: "auto", EventLog: defaultEventLog},
	}
}

// Env names the environment variables that override the file.
var Env = map[string]func(*File, string){
	"ENROLL_CLIENT_DEVICE_ID":  func(f *File, v string) { f.DeviceID = v },
	"ENROLL_CLIENT_BUNDLE":     func(f *File, v string) { f.BundlePath = v },
	"ENROLL_CLIENT_STATE_PATH": func(f *File, v string) { f.StatePath = v },
	"ENROLL_CLIENT_LOG_LEVEL":  func(f *File, v string) { f.Log.Level = v },
	"ENROLL_CLIENT_TPM":        func(f *File, v string) { f.TPM.Mode = v },
	"ENROLL_CLIENT_TPM_PATH":   func(f *File, v string) { f.TPM.Path = v },
}

// Load reads path (a missing file at the default path means all defaults),
// applies environment overrides and validates.
func Load(path string, getenv func(string) string, hostname func() (string, error)) (File, error) {
	f := Default()
	fh, err := os.Open(path)
	switch {
	case err == nil:
		defer fh.Close()
		if f, err = Parse(fh); err != nil {
			return File{}, fmt.Errorf("config %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist) && path == DefaultPath:
	default:
		return File{}, fmt.Errorf("config: %w", err)
	}
	for name, set := range Env {
		if v := getenv(name); v != "" {
			set(&f, v)
		}
	}
	if f.DeviceID == "" {
		h, err := hostname()
		if err != nil {
			return File{}, fmt.Errorf("device_id is empty and the host name is unknown: %w", err)
		}
		f.DeviceID = strings.ToLower(strings.SplitN(h, ".", 2)[0])
	}
	if err := f.Validate(); err != nil {
		return File{}, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a file over the defaults, refusing unknown keys.
func Parse(r io.Reader) (File, error) {
	f := Default()
	if err := strictyaml.Decode(r, &f); err != nil {
		return File{}, err
	}
	return f, nil
}

// Validate checks every key and reports all problems, each naming its key.
func (f File) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if err := wire.ValidateDeviceID(f.DeviceID); err != nil {
		bad("device_id", "%v", err)
	}
	if f.BundlePath == "" {
		bad("bundle_path", "required")
	}
	if f.StatePath == "" {
		bad("state_path", "required")
	}
	groupOfDir := map[string]string{}
	for i, s := range f.Sinks {
		if s.Path == "" {
			bad(fmt.Sprintf("sinks[%d].path", i), "required")
		}
		if _, err := s.FileMode(); err != nil {
			bad(fmt.Sprintf("sinks[%d].mode", i), "%v", err)
		}
		if _, err := s.GID(); err != nil {
			bad(fmt.Sprintf("sinks[%d].group", i), "%v", err)
		}
		// A sink with a group gives its directory that group too (so the
		// group can enter it): two groups cannot share one directory.
		dir := filepath.Dir(s.Path)
		if g, ok := groupOfDir[dir]; ok && g != s.Group {
			bad(fmt.Sprintf("sinks[%d].group", i), "%q differs from another sink's %q in the same directory %s; give each group's sink a directory of its own", s.Group, g, dir)
		}
		groupOfDir[dir] = s.Group
	}
	if f.Timeouts.Vault <= 0 {
		bad("timeouts.vault", "must be positive")
	}
	if f.Timeouts.Server <= 0 {
		bad("timeouts.server", "must be positive")
	}
	if f.TPM.Mode != "auto" && f.TPM.Mode != "required" && f.TPM.Mode != "off" {
		bad("tpm.mode", "want auto, required or off, got %q", f.TPM.Mode)
	}
	if f.TPM.Mode != "off" && f.TPM.Path == "" {
		bad("tpm.path", "required unless tpm.mode is off")
	}
	if f.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(f.Metrics.Listen); err != nil {
			bad("metrics.listen", "want host:port: %v", err)
		}
	}
	if f.Diagnostics.Listen != "" {
		if _, _, err := net.SplitHostPort(f.Diagnostics.Listen); err != nil {
			bad("diagnostics.listen", "want host:port (or :port for loopback): %v", err)
		} else if f.Diagnostics.Addr() == f.Metrics.Listen {
			bad("diagnostics.listen", "%s is metrics.listen too; the diagnostics listener serves /metrics itself, so leave metrics.listen empty", f.Metrics.Listen)
		}
	}
	if f.TPM.EK != "auto" {
		if _, err := ekprofile.ParseKinds([]string{f.TPM.EK}); err != nil {
			bad("tpm.ek", "want auto or an EK kind: %v", err)
		}
	}
	return errors.Join(errs...)
}
