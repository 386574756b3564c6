package tpmsim

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	goattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// BootLog is a real firmware event log with Secure Boot on (see
// testdata/README.md).
func BootLog(t testing.TB) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(file), "testdata", "sb_cert_eventlog"))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// evBootServicesApplication is EV_EFI_BOOT_SERVICES_APPLICATION.
const evBootServicesApplication = 0x80000003

// MeasureBoot extends the TPM's SHA-256 PCRs with every measured event of
// a log, as the firmware did when it wrote the log: afterwards the log
// replays against the TPM's PCRs.
func MeasureBoot(t testing.TB, tpm transport.TPM, log []byte) {
	t.Helper()
	el, err := goattest.ParseEventLog(log)
	if err != nil {
		t.Fatalf("parse event log: %v", err)
	}
	for _, e := range el.Events(goattest.HashSHA256) {
		if e.Type == 3 { // EV_NO_ACTION: logged, never extended
			continue
		}
		if len(e.Digest) != 32 {
			t.Fatalf("event in PCR %d has no SHA-256 digest", e.Index)
		}
		ExtendPCR(t, tpm, e.Index, e.Digest)
	}
}

// BootApp is a TCG_PCR_EVENT2 that measures a boot application into PCR
// 4 by its SHA-256 digest; appended to a log (and extended into the TPM)
// it stands for another boot loader or kernel.
func BootApp(digest []byte) []byte {
	return PCR4Event(evBootServicesApplication, digest, []byte("test boot application"))
}

// PCR4Event is a TCG_PCR_EVENT2 of any type in PCR 4 with a SHA-256
// digest and data of the caller's choosing (true or not).
func PCR4Event(evType uint32, digest, data []byte) []byte {
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	le(uint32(4))
	le(evType)
	le(uint32(1))                 // one digest
	le(uint16(tpm2.TPMAlgSHA256)) // algorithm
	b.Write(digest)               // 32 bytes
	le(uint32(len(data)))
	b.Write(data)
	return b.Bytes()
}
