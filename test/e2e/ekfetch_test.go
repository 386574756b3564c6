//go:build cgo

package e2e

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/ekfetch"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// A firmware TPM with no EK certificate in NV: its manufacturer publishes
// one (here a local HTTPS server named by the fleet's ek_cert_url, at the
// Intel-style path of the EK). A fleet with ek_cert_fetch allowed fetches
// it, verifies it against ek_ca_file and binds the device; a fleet with it
// off never asks the manufacturer and refuses the device; where the
// manufacturer has nothing for the EK, the device is refused and told so.
func TestTPMManufacturerCertificateFetched(t *testing.T) {
	for _, fetch := range []string{"allowed", "off", "unpublished"} {
		t.Run(fetch, func(t *testing.T) {
			sim := tpmsim.Open(t)
			ca := tpmsim.NewCA(t, "Firmware")
			pub := tpmsim.EKPublic(t, sim, tpmsim.RSAEK)
			cert := ca.IssueEKCert(t, pub)
			path, err := ekfetch.URL(ekfetch.Intel, "/ekcertservice/", pub)
			if err != nil {
				t.Fatal(err)
			}
			var hits atomic.Int32
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				if r.URL.EscapedPath() != path || fetch == "unpublished" {
					http.NotFound(w, r)
					return
				}
				w.Write(cert)
			}))
			defer srv.Close()
			dir := t.TempDir()
			caFile, srvCA := filepath.Join(dir, "ek-cas.pem"), filepath.Join(dir, "service-ca.pem")
			writeFile(t, caFile, ca.BundlePEM())
			writeFile(t, srvCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
			mode := fetch
			if fetch == "unpublished" {
				mode = "allowed"
			}
			e := newEnv(t, options{fleet: func(f *config.Fleet) {
				f.TPM = config.TPM{Mode: wire.TPMRequired, EKCAFile: caFile, PCRs: []int{0, 7}, ChallengeTTL: time.Minute,
					EKCertFetch: mode, EKCertURL: srv.URL + "/ekcertservice/", EKCertFetchCAFile: srvCA}
			}})
			d, err := e.tpmDevice("ptt-1", sim, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			if fetch == "off" {
				refused(t, d, "allow-list", "a TPM without a certificate in a fleet that does not fetch")
				if hits.Load() != 0 {
					t.Fatalf("the manufacturer was asked %d times by a fleet with ek_cert_fetch off", hits.Load())
				}
				return
			}
			if fetch == "unpublished" {
				refused(t, d, "its manufacturer's could not be fetched", "a TPM whose manufacturer publishes no certificate")
				if hits.Load() == 0 {
					t.Fatal("the manufacturer was never asked")
				}
				return
			}
			e.enroll(d)
			if hits.Load() == 0 {
				t.Fatal("the manufacturer's service was never asked")
			}
			devs, _ := e.inventory()
			if len(devs) != 1 || devs[0].EKHash != ekHashOf(t, sim) || devs[0].EKIssuer != "Firmware EK Issuing CA" || devs[0].State != inventory.DeviceEnrolled {
				t.Fatalf("devices %+v, want ptt-1 bound to its EK, certified by the fetched certificate", devs)
			}
		})
	}
}
