//go:build cgo

package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"

	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/ekprofile"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/swtpm"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// The fleet asks for P-384 EKs (enrollctl bundle -tpm-ek ecc384) and
// trusts only its manufacturer's root; the TPM keeps the issuing CA in its
// EK chain range. The real client picks swtpm's high-range P-384 EK over
// its low-range RSA one, sends the intermediate, and enrolls; the device
// is bound to that EK.
func TestSwtpmHighRangeEKWithChainInNV(t *testing.T) {
	p := swtpm.Start(t)
	nv, err := linuxudstpm.Open(p.Socket)
	if err != nil {
		t.Fatal(err)
	}
	tpmsim.WriteNV(t, nv, ekprofile.ChainFirst, p.IssuerDER)
	nv.Close()
	caFile := filepath.Join(t.TempDir(), "ek-root.pem")
	writeFile(t, caFile, p.RootPEM)
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.TPM = config.TPM{Mode: wire.TPMRequired, EKCAFile: caFile, PCRs: []int{0, 7}, ChallengeTTL: time.Minute}
	}})
	e.bundle.TPMEK = []string{ekprofile.ECC384}
	d := e.deviceDirWith("sw-384", "tpm:\n  mode: required\n  path: "+p.Socket+"\n")
	code, out, _ := e.cli("tpm-info", "-config", d.config)
	if code != 0 || !strings.Contains(out, "ek: ecc384 (H-3)") || !strings.Contains(out, "ek_chain: 1") {
		t.Fatalf("tpm-info: %d %s", code, out)
	}
	if err := runClient(t, clientBinary(t), d, 0); err != nil {
		t.Fatalf("enroll with the P-384 EK: %v", err)
	}
	dev, err := tpm.Open(p.Socket, nil, tpm.EKECC384)
	if err != nil {
		t.Fatal(err)
	}
	want, err := dev.EKHash()
	dev.Close()
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := e.inventory()
	if len(devs) != 1 || devs[0].EKHash != want || devs[0].EKKind != "ecc384" || devs[0].State != inventory.DeviceEnrolled {
		t.Fatalf("devices %+v, want sw-384 enrolled and bound to its P-384 EK %s", devs, want)
	}
}
