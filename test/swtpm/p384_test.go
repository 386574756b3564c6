package swtpm_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edge-enroll/enroll/enroll-server/attest"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/swtpm"
)

// An AK that tpm2_createak makes under a P-384 EK (tpm2_createek -G
// ecc384: template H-3, SHA-384 name) has a SHA-384 name itself. The
// server accepts it: its identity checks, its tpm2_quote verifies, and a
// credential the server makes for its name to that EK is released by
// tpm2_activatecredential; for another name it is not.
func TestTPM2ToolsAKUnderP384EK(t *testing.T) {
	swtpm.Require(t, "tpm2_createek", "tpm2_createak", "tpm2_quote", "tpm2_activatecredential")
	p := swtpm.Start(t)
	dir := t.TempDir()
	p.Run(t, dir, "tpm2_createek", "-c", "ek.ctx", "-G", "ecc384", "-u", "ek.pub")
	p.Run(t, dir, "tpm2_flushcontext", "-t")
	p.Run(t, dir, "tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc384", "-u", "ak.pub", "-n", "ak.name")
	p.Run(t, dir, "tpm2_flushcontext", "-t")
	p.Run(t, dir, "tpm2_flushcontext", "-s")

	ekRaw, akRaw := tss2B(t, filepath.Join(dir, "ek.pub")), tss2B(t, filepath.Join(dir, "ak.pub"))
	ek, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekRaw)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := tpm2.Unmarshal[tpm2.TPMTPublic](akRaw)
	if err != nil {
		t.Fatal(err)
	}
	if ek.NameAlg != tpm2.TPMAlgSHA384 || ak.NameAlg != tpm2.TPMAlgSHA384 {
		t.Fatalf("EK name %v, AK name %v: tpm2-tools no longer makes SHA-384 names here", ek.NameAlg, ak.NameAlg)
	}
	req := wire.ChallengeRequest{Fleet: "acme", DeviceID: "tools-1", EKPublic: ekRaw, AKPublic: akRaw}
	id, err := attest.CheckIdentity(req, nil, func(string) bool { return true }, time.Now())
	if err != nil {
		t.Fatalf("the server refused tpm2-tools' AK under a P-384 EK: %v", err)
	}
	name := read(t, filepath.Join(dir, "ak.name"))
	if id.EKKind != "ecc384" || !bytes.Equal(id.AKName, name) {
		t.Fatalf("EK kind %s, AK name %x; tpm2-tools named it %x", id.EKKind, id.AKName, name)
	}

	nonce := make([]byte, 32)
	rand.Read(nonce)
	p.Run(t, dir, "tpm2_quote", "-c", "ak.ctx", "-l", "sha256:0,7", "-q", hex.EncodeToString(nonce),
		"-m", "quote.msg", "-s", "quote.sig", "-g", "sha256")
	p.Run(t, dir, "tpm2_flushcontext", "-t")
	p.Run(t, dir, "tpm2_pcrread", "sha256:0,7", "-o", "pcrs.bin")
	raw := read(t, filepath.Join(dir, "pcrs.bin"))
	pcrs := []wire.PCRValue{{Index: 0, Digest: raw[:32]}, {Index: 7, Digest: raw[32:64]}}
	msg, sig := read(t, filepath.Join(dir, "quote.msg")), read(t, filepath.Join(dir, "quote.sig"))
	if _, err := attest.VerifyQuote(akRaw, msg, sig, nonce, []int{0, 7}, pcrs); err != nil {
		t.Fatalf("the P-384 AK's quote: %v", err)
	}

	secret := make([]byte, 32)
	rand.Read(secret)
	activate := func(name []byte) ([]byte, error) {
		blob, enc, err := attest.MakeCredential(rand.Reader, *ek, name, secret)
		if err != nil {
			t.Fatal(err)
		}
		writeCredential(dir, blob, enc)
		defer p.Run(t, dir, "tpm2_flushcontext", "-t")
		// The high-range EK has userWithAuth: its empty auth value
		// authorizes it, as the client's PolicyB session does.
		return p.Try(dir, "tpm2_activatecredential", "-c", "ak.ctx", "-C", "ek.ctx", "-i", "cred.bin", "-o", "secret.out")
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
