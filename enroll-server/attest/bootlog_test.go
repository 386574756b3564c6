package attest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	goattest "github.com/google/go-attestation/attest"

	"github.com/edge-enroll/enroll/enroll-server/attest"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// pcrsAfter computes the SHA-256 PCRs 0-7 a TPM holds once firmware has
// measured log into it, as the simulator tests extend them.
func pcrsAfter(t *testing.T, log []byte) map[int][]byte {
	t.Helper()
	el, err := goattest.ParseEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{}
	for _, i := range attest.BootPCRs {
		pcrs[i] = make([]byte, 32)
	}
	for _, e := range el.Events(goattest.HashSHA256) {
		if e.Type == 3 || e.Index > 7 {
			continue
		}
		h := sha256.Sum256(append(append([]byte{}, pcrs[e.Index]...), e.Digest...))
		pcrs[e.Index] = h[:]
	}
	return pcrs
}

func TestBootLogReplays(t *testing.T) {
	log := tpmsim.BootLog(t)
	b, err := attest.CheckEventLog(log, pcrsAfter(t, log))
	if err != nil {
		t.Fatalf("a log that replays was refused: %v", err)
	}
	if b.SecureBoot != attest.SecureBootEnabled || len(b.PCR4) != 3 {
		t.Fatalf("boot = %+v, want Secure Boot enabled and three boot applications", b)
	}
	for _, d := range b.PCR4 {
		if _, err := hex.DecodeString(d); err != nil || len(d) != 64 {
			t.Fatalf("PCR 4 digest %q is not hex SHA-256", d)
		}
	}
}

func TestBootLogEditedIsRefused(t *testing.T) {
	log := tpmsim.BootLog(t)
	pcrs := pcrsAfter(t, log)
	// One byte of any measured event's SHA-256 digest changed: the log
	// no longer adds up to the quoted PCRs.
	el, err := goattest.ParseEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	edits := 0
	for _, e := range el.Events(goattest.HashSHA256) {
		at := bytes.Index(log, e.Digest)
		if e.Type == 3 || at < 0 {
			continue
		}
		edited := append([]byte{}, log...)
		edited[at+31] ^= 0x01
		_, err := attest.CheckEventLog(edited, pcrs)
		var le *attest.LogError
		if !errors.As(err, &le) {
			t.Fatalf("digest of an event in PCR %d changed: err = %v, want a LogError", e.Index, err)
		}
		edits++
	}
	if edits < 10 {
		t.Fatalf("only %d events edited", edits)
	}
	// An extra event the TPM never saw.
	longer := append(append([]byte{}, log...), tpmsim.BootApp(make([]byte, 32))...)
	if _, err := attest.CheckEventLog(longer, pcrs); err == nil {
		t.Fatal("a log with an event the PCRs never saw was accepted")
	}
	// A log stripped down to nothing for a PCR that holds a measurement.
	pcrs[3] = make([]byte, 32)
	pcrs[3][0] = 1
	if _, err := attest.CheckEventLog(log, pcrs); err == nil || !strings.Contains(err.Error(), "PCR 3") {
		t.Fatalf("err = %v, want PCR 3 without events refused", err)
	}
	if _, err := attest.CheckEventLog([]byte("not a log"), pcrsAfter(t, log)); err == nil {
		t.Fatal("garbage accepted as an event log")
	}
}

func TestBootPolicyJudge(t *testing.T) {
	log := tpmsim.BootLog(t)
	b, err := attest.CheckEventLog(log, pcrsAfter(t, log))
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	for _, d := range b.PCR4 {
		all[d] = true
	}
	if err := (attest.BootPolicy{SecureBoot: attest.SecureBootRequired, PCR4Allowed: all}).Judge(b); err != nil {
		t.Fatalf("a policy learned from this boot refused it: %v", err)
	}
	missing := map[string]bool{b.PCR4[0]: true, b.PCR4[1]: true}
	var pe *attest.PolicyError
	if err := (attest.BootPolicy{PCR4Allowed: missing}).Judge(b); !errors.As(err, &pe) || !strings.Contains(err.Error(), b.PCR4[2]) {
		t.Fatalf("err = %v, want the third boot application refused", err)
	}
	off := b
	off.SecureBoot = attest.SecureBootDisabled
	if err := (attest.BootPolicy{SecureBoot: attest.SecureBootRequired}).Judge(off); !errors.As(err, &pe) {
		t.Fatalf("err = %v, want Secure Boot off refused", err)
	}
	if err := (attest.BootPolicy{SecureBoot: attest.SecureBootAny}).Judge(off); err != nil {
		t.Fatalf("secure_boot any refused a boot: %v", err)
	}
}

// A boot loader's digest logged under another event type still replays
// (replay binds digests, not types): it is judged as a boot application
// all the same. A separator whose digest is the hash of its data is not.
func TestBootLogRelabelledLoaderIsStillABootApplication(t *testing.T) {
	log := tpmsim.BootLog(t)
	base, err := attest.CheckEventLog(log, pcrsAfter(t, log))
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, d := range base.PCR4 {
		allowed[d] = true
	}
	loader := sha256.Sum256([]byte("a boot loader nobody allowed"))
	sep := sha256.Sum256([]byte{0, 0, 0, 0})
	const evVariableDriverConfig, evSeparator = 0x80000001, 4
	lying := append(append(append([]byte{}, log...),
		tpmsim.PCR4Event(evVariableDriverConfig, loader[:], []byte("nothing to see"))...),
		tpmsim.PCR4Event(evSeparator, sep[:], []byte{0, 0, 0, 0})...)
	b, err := attest.CheckEventLog(lying, pcrsAfter(t, lying))
	if err != nil {
		t.Fatalf("the log replays, yet was refused: %v", err)
	}
	if len(b.PCR4) != len(base.PCR4)+1 || b.PCR4[len(b.PCR4)-1] != hex.EncodeToString(loader[:]) {
		t.Fatalf("PCR 4 boot applications %v; want the relabelled loader counted and the separator not", b.PCR4)
	}
	var pe *attest.PolicyError
	if err := (attest.BootPolicy{PCR4Allowed: allowed}).Judge(b); !errors.As(err, &pe) || !strings.Contains(err.Error(), hex.EncodeToString(loader[:])) {
		t.Fatalf("err = %v, want the relabelled loader refused", err)
	}
}

// A log in which nothing measured the Secure Boot variables says nothing
// about Secure Boot: unknown, not disabled.
func TestBootLogWithoutPCR7IsUnknownSecureBoot(t *testing.T) {
	full := tpmsim.BootLog(t)
	// The Spec ID header (a TCG_PCR_EVENT: 32 bytes, then its data), then
	// one boot application.
	header := 32 + int(binary.LittleEndian.Uint32(full[28:32]))
	app := sha256.Sum256([]byte("a loader"))
	log := append(append([]byte{}, full[:header]...), tpmsim.BootApp(app[:])...)
	b, err := attest.CheckEventLog(log, pcrsAfter(t, log))
	if err != nil {
		t.Fatal(err)
	}
	if b.SecureBoot != attest.SecureBootUnknown || len(b.PCR4) != 1 {
		t.Fatalf("boot = %+v; want Secure Boot unknown and one boot application", b)
	}
}

// FuzzEventLog feeds hostile logs to the server's event log check: it
// must never panic, and whatever it accepts must replay to the PCRs.
func FuzzEventLog(f *testing.F) {
	log := tpmsim.BootLog(f)
	f.Add(log)
	f.Add(log[:len(log)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		pcrs := map[int][]byte{}
		for _, i := range attest.BootPCRs {
			pcrs[i] = make([]byte, 32)
		}
		b, err := attest.CheckEventLog(raw, pcrs)
		if err == nil && len(b.PCR4) > 0 {
			t.Fatalf("boot applications accepted against reset PCRs: %+v", b)
		}
	})
}
