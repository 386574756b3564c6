package config_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/edge-enroll/enroll/enroll-client/config"
)

func TestValidateSinksAndDiagnostics(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*config.File)
		wantErr string // "" means valid
	}{
		{"defaults", func(*config.File) {}, ""},
		{"group mode", func(f *config.File) { f.Sinks[0].Mode = "0640" }, ""},
		{"read-only for the group", func(f *config.File) { f.Sinks[0].Mode = "440" }, ""},
		{"world-readable", func(f *config.File) { f.Sinks[0].Mode = "0644" }, "sinks[0].mode: \"0644\" lets every user"},
		{"world-writable", func(f *config.File) { f.Sinks[0].Mode = "0602" }, "lets every user"},
		{"executable", func(f *config.File) { f.Sinks[0].Mode = "0750" }, "executable"},
		{"setgid", func(f *config.File) { f.Sinks[0].Mode = "2640" }, "special bits"},
		{"not octal", func(f *config.File) { f.Sinks[0].Mode = "rw-r-----" }, "want an octal mode"},
		{"owner cannot read", func(f *config.File) { f.Sinks[0].Mode = "0060" }, "at least \"0400\""},
		{"group by name", func(f *config.File) { f.Sinks[0].Group = "root" }, ""},
		{"numeric group", func(f *config.File) { f.Sinks[0].Group = "4242" }, ""},
		{"unknown group", func(f *config.File) { f.Sinks[0].Group = "no-such-group-here" }, "sinks[0].group: no group \"no-such-group-here\""},
		{"two groups in one directory", func(f *config.File) {
			f.Sinks = []config.Sink{{Path: "/run/e/a", Group: "4242"}, {Path: "/run/e/b", Group: "4243"}}
		}, "sinks[1].group"},
		{"diagnostics on a port", func(f *config.File) { f.Diagnostics.Listen = ":9102" }, ""},
		{"diagnostics without a port", func(f *config.File) { f.Diagnostics.Listen = "127.0.0.1" }, "diagnostics.listen: want host:port"},
		{"diagnostics on the metrics address", func(f *config.File) {
			f.Diagnostics.Listen, f.Metrics.Listen = ":9102", "127.0.0.1:9102"
		}, "leave metrics.listen empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := config.Default()
			f.DeviceID = "sensor-1"
			tc.edit(&f)
			err := f.Validate()
			if runtime.GOOS == "windows" && strings.Contains(tc.name, "group") {
				return // no groups on Windows: refused, see GID
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused a valid configuration: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestDiagnosticsDefaultsToLoopback(t *testing.T) {
	for in, want := range map[string]string{":9102": "127.0.0.1:9102", "0.0.0.0:9102": "0.0.0.0:9102", "[::1]:9102": "[::1]:9102"} {
		if got := (config.Diagnostics{Listen: in}).Addr(); got != want {
			t.Errorf("Addr(%q) = %q, want %q", in, got, want)
		}
	}
}
