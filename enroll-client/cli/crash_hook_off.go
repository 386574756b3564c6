//go:build !crashtest

package cli

import "github.com/edge-enroll/enroll/enroll-client/lifecycle"

// crashHook: release builds carry no crash hook (see crash_hook_on.go).
func crashHook() func(lifecycle.State) { return nil }
