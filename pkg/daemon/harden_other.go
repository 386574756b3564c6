//go:build !linux

package daemon

// Harden is a no-op where the platform offers no per-process switch; on
// Windows the service runs under an account other users cannot debug.
func Harden() error { return nil }
