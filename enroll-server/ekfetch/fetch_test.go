package ekfetch

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func selfSigned(t *testing.T) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Through a local HTTPS server standing in for the manufacturer: each
// answer format decodes to the certificate, at the derived path only;
// errors, oversized answers and redirects are refused.
func TestFetchThroughLocalHTTPS(t *testing.T) {
	der := selfSigned(t)
	k := rsaKey(t, intelRSA)
	var hits atomic.Int32
	var answer func(w http.ResponseWriter)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.EscapedPath() != "/ekcertservice/WVEG2rRwkQ7m3RpXlUphgo6Y2HLxl18h6ZZkkOAdnBE%3D" {
			http.NotFound(w, r)
			return
		}
		answer(w)
	}))
	defer srv.Close()
	src, err := NewSource(Intel, srv.URL+"/ekcertservice/", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	escaped := strings.ReplaceAll(base64.URLEncoding.EncodeToString(der), "=", "%3D")
	for name, body := range map[string][]byte{
		"intel json": []byte(`{"pubhash":"x","certificate":"` + escaped + `"}`),
		"pem":        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"der":        der,
	} {
		answer = func(w http.ResponseWriter) { w.Write(body) }
		got, err := src.Fetch(context.Background(), k)
		if err != nil || !bytes.Equal(got, der) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, a := range map[string]func(w http.ResponseWriter){
		"not found": func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound) },
		"too large": func(w http.ResponseWriter) { w.Write(append([]byte{0x30}, make([]byte, MaxResponse+1)...)) },
		"garbage":   func(w http.ResponseWriter) { w.Write([]byte("hello")) },
		"redirect": func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://169.254.169.254/")
			w.WriteHeader(http.StatusFound)
		},
	} {
		answer = a
		if _, err := src.Fetch(context.Background(), k); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if hits.Load() != 7 {
		t.Fatalf("%d requests, want 7 (one per fetch, no redirect followed)", hits.Load())
	}
	// An untrusted server certificate is refused.
	plain, _ := NewSource(Intel, srv.URL+"/ekcertservice/", nil)
	answer = func(w http.ResponseWriter) { w.Write(der) }
	if _, err := plain.Fetch(context.Background(), k); err == nil {
		t.Fatal("fetched from a server the system does not trust")
	}
}

func TestNewSourceRefuses(t *testing.T) {
	for _, tc := range [][2]string{{Intel, "http://ekop.example/"}, {"ibm", ""}, {AMD, "https://x/?q=1"}, {Intel, "https:///nohost"}} {
		if _, err := NewSource(tc[0], tc[1], nil); err == nil {
			t.Errorf("%q accepted", tc)
		}
	}
	s, err := NewSource(AMD, "", nil)
	if err != nil || s.Base != DefaultBase[AMD] {
		t.Fatalf("default base: %+v %v", s, err)
	}
}

// Whatever a manufacturer's service (or whoever answers in its place)
// sends, Decode returns an error or bytes, never panics.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"certificate":"MAMCAQE%3D"}`))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if der, err := Decode(b); err == nil && len(der) == 0 {
			t.Fatal("decoded to nothing without an error")
		}
	})
}
