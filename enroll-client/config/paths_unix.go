//go:build !windows

package config

// Where things live by default on Linux and other Unix systems.
const (
	DefaultPath           = "/etc/enroll-client/config.yaml"
	defaultBundle         = "/etc/enroll-client/bundle.json"
	defaultState          = "/var/lib/enroll-client/state.db"
	defaultPreprovisioned = "/var/lib/enroll-client/preprovisioned.json"
	defaultSink           = "/run/enroll-client/token"
	defaultEventLog       = "/sys/kernel/security/tpm0/binary_bios_measurements"
	defaultTPM            = "/dev/tpmrm0"
)
