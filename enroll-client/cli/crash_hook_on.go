//go:build crashtest

package cli

import (
	"os"
	"strconv"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
)

// crashHook, in test builds only (-tags crashtest), returns for
// ENROLL_CLIENT_TEST_CRASH_AFTER=N a hook that kills the process right
// after the Nth durable transition: the crash-safety tests use it to cut
// power between a save and the next step. Release builds have no such
// hook (crash_hook_off.go).
func crashHook() func(lifecycle.State) {
	n, err := strconv.Atoi(os.Getenv("ENROLL_CLIENT_TEST_CRASH_AFTER"))
	if err != nil || n <= 0 {
		return nil
	}
	saves := 0
	return func(lifecycle.State) {
		if saves++; saves == n {
			p, _ := os.FindProcess(os.Getpid())
			_ = p.Kill() // SIGKILL on Unix, TerminateProcess on Windows
		}
	}
}
