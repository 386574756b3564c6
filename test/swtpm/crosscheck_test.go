package swtpm_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/enroll-server/attest"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/swtpm"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// tss2B strips the size of a TPM2B structure as tpm2-tools writes it.
func tss2B(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		t.Fatalf("%s is not a TPM2B", path)
	}
	return b[2:]
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// makeKeys has tpm2-tools make an EK and an AK (ECDSA P-256, SHA-256).
func makeKeys(t *testing.T, p *swtpm.TPM, dir string) {
	p.Run(t, dir, "tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
	p.Run(t, dir, "tpm2_flushcontext", "-t")
	p.Run(t, dir, "tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa",
		"-u", "ak.pub", "-n", "ak.name")
	p.Run(t, dir, "tpm2_flushcontext", "-t")
	p.Run(t, dir, "tpm2_flushcontext", "-s")
}

// A quote made by tpm2_quote verifies with the server's code; the same
// quote over another nonce, or with other PCR values, does not.
func TestServerVerifiesTPM2ToolsQuote(t *testing.T) {
	swtpm.Require(t, "tpm2_createek", "tpm2_quote")
	p := swtpm.Start(t)
	dir := t.TempDir()
	makeKeys(t, p, dir)
	nonce := make([]byte, 32)
	rand.Read(nonce)
	p.Run(t, dir, "tpm2_quote", "-c", "ak.ctx", "-l", "sha256:0,7,16", "-q", hex.EncodeToString(nonce),
		"-m", "quote.msg", "-s", "quote.sig", "-g", "sha256")
	p.Run(t, dir, "tpm2_flushcontext", "-t")
	p.Run(t, dir, "tpm2_pcrread", "sha256:0,7,16", "-o", "pcrs.bin")
	raw := read(t, filepath.Join(dir, "pcrs.bin"))
	if len(raw) != 3*32 {
		t.Fatalf("pcrs.bin holds %d bytes", len(raw))
	}
	pcrs := []wire.PCRValue{{Index: 0, Digest: raw[:32]}, {Index: 7, Digest: raw[32:64]}, {Index: 16, Digest: raw[64:]}}
	ak := tss2B(t, filepath.Join(dir, "ak.pub"))
	msg, sig := read(t, filepath.Join(dir, "quote.msg")), read(t, filepath.Join(dir, "quote.sig"))

	if _, err := attest.VerifyQuote(ak, msg, sig, nonce, []int{0, 7, 16}, pcrs); err != nil {
		t.Fatalf("the server refused a genuine tpm2_quote: %v", err)
	}
	other := bytes.Clone(nonce)
	other[0] ^= 1
	if _, err := attest.VerifyQuote(ak, msg, sig, other, []int{0, 7, 16}, pcrs); err == nil {
		t.Fatal("a quote over another nonce verified")
	}
	pcrs[2].Digest = bytes.Repeat([]byte{1}, 32)
	if _, err := attest.VerifyQuote(ak, msg, sig, nonce, []int{0, 7, 16}, pcrs); err == nil {
		t.Fatal("a quote verified with other PCR values")
	}
}

// A credential made by the server's code for tpm2-tools' EK and AK is
// released by tpm2_activatecredential; one made for another AK is not.
func TestTPM2ToolsActivatesServerCredential(t *testing.T) {
	swtpm.Require(t, "tpm2_createek", "tpm2_activatecredential")
	p := swtpm.Start(t)
	dir := t.TempDir()
	makeKeys(t, p, dir)
	ek, err := tpm2.Unmarshal[tpm2.TPMTPublic](tss2B(t, filepath.Join(dir, "ek.pub")))
	if err != nil {
		t.Fatal(err)
	}
	name := read(t, filepath.Join(dir, "ak.name"))
	secret := make([]byte, 32)
	rand.Read(secret)

	activate := func(name []byte) ([]byte, error) {
		blob, enc, err := attest.MakeCredential(rand.Reader, *ek, name, secret)
		if err != nil {
			t.Fatal(err)
		}
		writeCredential(dir, blob, enc)
		p.Run(t, dir, "tpm2_startauthsession", "--policy-session", "-S", "session.ctx")
		p.Run(t, dir, "tpm2_policysecret", "-S", "session.ctx", "-c", "e")
		defer func() {
			p.Run(t, dir, "tpm2_flushcontext", "-t")
			p.Run(t, dir, "tpm2_flushcontext", "-s")
		}()
		return p.Try(dir, "tpm2_activatecredential", "-c", "ak.ctx", "-C", "ek.ctx", "-i", "cred.bin",
			"-o", "secret.out", "-P", "session:session.ctx")
	}
	if _, err := activate(name); err != nil {
		t.Fatalf("tpm2_activatecredential refused the server's credential: %v", err)
	}
	if got := read(t, filepath.Join(dir, "secret.out")); !bytes.Equal(got, secret) {
		t.Fatalf("activated %x, want %x", got, secret)
	}
	wrong := bytes.Clone(name)
	wrong[len(wrong)-1] ^= 1
	if _, err := activate(wrong); err == nil {
		t.Fatal("the TPM released a credential made for another AK")
	}
}

// enroll-client's TPM code over swtpm's socket: the EK certificate that
// swtpm_setup's local CA issued verifies, and a full attestation passes.
func TestClientAttestsOverSwtpmSocket(t *testing.T) {
	p := swtpm.Start(t)
	d, err := tpm.Open(p.Socket, tpmsim.NewKV(), tpm.EKAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.EKKind() != tpm.EKRSA || !d.HasEKCert() {
		t.Fatalf("EK %s, certificate %v; want swtpm's certified RSA EK", d.EKKind(), d.HasEKCert())
	}
	req, err := d.Identity()
	if err != nil {
		t.Fatal(err)
	}
	req.Fleet, req.DeviceID = "acme", "sw-1"
	cas, err := attest.ParseCAs(p.CABundle)
	if err != nil {
		t.Fatal(err)
	}
	id, err := attest.CheckIdentity(req, cas, nil, time.Now())
	if err != nil {
		t.Fatalf("swtpm's EK certificate: %v", err)
	}
	if id.TPM.Manufacturer != "id:00001014" || id.TPM.Model != "swtpm" {
		t.Fatalf("TPM %+v", id.TPM)
	}
	ch, resp, err := attest.NewChallenge(nil, id, []int{0, 7})
	if err != nil {
		t.Fatal(err)
	}
	resp.ChallengeID = "c"
	ev, err := d.Answer(resp)
	if err != nil {
		t.Fatal(err)
	}
	if err := attest.CheckEvidence(ch, id.AKPublic, ev, nil); err != nil {
		t.Fatal(err)
	}
}

// writeCredential writes MakeCredential's output as tpm2-tools' credential
// file (magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET) to
// dir/cred.bin, and removes the last activation's output.
func writeCredential(dir string, blob, enc []byte) {
	var f bytes.Buffer
	binary.Write(&f, binary.BigEndian, uint32(0xBADCC0DE))
	binary.Write(&f, binary.BigEndian, uint32(1))
	binary.Write(&f, binary.BigEndian, uint16(len(blob)))
	f.Write(blob)
	binary.Write(&f, binary.BigEndian, uint16(len(enc)))
	f.Write(enc)
	os.WriteFile(filepath.Join(dir, "cred.bin"), f.Bytes(), 0o600)
	os.Remove(filepath.Join(dir, "secret.out"))
}
