package daemon

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHardenMakesTheProcessNonDumpable(t *testing.T) {
	if err := Harden(); err != nil {
		t.Fatal(err)
	}
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil || d != 0 {
		t.Fatalf("dumpable = %d, %v; want 0", d, err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &lim); err != nil || lim.Cur != 0 || lim.Max != 0 {
		t.Fatalf("core limit = %+v, %v; want 0", lim, err)
	}
}

func TestUnitCarriesTheHardening(t *testing.T) {
	for _, want := range []string{
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/{{Name}}", "ProtectHome=yes",
		"PrivateTmp=yes", "CapabilityBoundingSet=\n", "LimitCORE=0", "Restart=on-failure", "StartLimitBurst=",
		"DeviceAllow=/dev/tpmrm0",
	} {
		if !strings.Contains(UnitTemplate(), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}
