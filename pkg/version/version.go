// Package version is the build's version, stamped by the linker:
//
//	-ldflags "-X github.com/edge-enroll/enroll/pkg/version.Version=v1.2.3 -X github.com/edge-enroll/enroll/pkg/version.Commit=abc123"
package version

import "runtime"

// Stamped at build time.
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is what `--version` prints.
func String(binary string) string {
	return binary + " " + Version + " (commit " + Commit + ", " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
