// Package tpm is enroll-client's TPM 2.0: the device's hardware identity
// (its endorsement key and the key's certificate), an attestation key kept
// across restarts, answers to enroll-server's challenges, and a data key
// sealed to the TPM that protects the device's state.
//
// Every transient object is flushed after the operation that loaded it.
package tpm

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/pkg/ekprofile"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// KV is where the TPM's key blobs are kept (the device's state store).
// The blobs are wrapped by the TPM: useless without it.
type KV interface {
	ReadState(key string) ([]byte, error)
	WriteState(key string, value []byte) error
}

// Keys of the blobs in the KV.
const (
	akKey      = "tpm/ak"
	dataKeyKey = "tpm/data-key"
)

// EK kinds a device can use (ekprofile's names; "rsa" and "ecc" are
// accepted for the first two).
const (
	EKAuto    = "auto"            // the fleet's preferred kind the TPM holds a certificate for
	EKRSA     = ekprofile.RSA2048 // RSA 2048
	EKECC     = ekprofile.ECC256  // ECC NIST P-256
	EKECC384  = ekprofile.ECC384  // ECC NIST P-384, SHA-384 name (high range)
	EKRSA3072 = ekprofile.RSA3072 // RSA 3072, SHA-384 name (high range)
)

// maxNVChunk is how much NV is read per command; below every TPM's
// TPM_PT_NV_BUFFER_MAX.
const maxNVChunk = 512

// maxNVRead caps what is read from one NV index: an EK certificate, a
// template, or a few chain certificates.
const maxNVRead = 16 << 10

// Device is an open TPM. It is safe for concurrent use; commands are
// serialised.
type Device struct {
	mu sync.Mutex
	t  transport.TPMCloser
	kv KV
	ek ekChoice
	// eventLog is the firmware event log's path (see SetEventLog).
	eventLog string
}

// Open opens the TPM at path (see openTransport) and chooses its EK: of
// kind ekKind, or with auto the first of prefer (the fleet's preference)
// that the TPM holds a certificate for.
func Open(path string, kv KV, ekKind string, prefer ...string) (*Device, error) {
	t, err := openTransport(path)
	if err != nil {
		return nil, err
	}
	d, err := New(t, kv, ekKind, prefer...)
	if err != nil {
		t.Close()
		return nil, err
	}
	return d, nil
}

// New uses an open transport (tests pass a simulator); Close closes it.
func New(t transport.TPMCloser, kv KV, ekKind string, prefer ...string) (*Device, error) {
	order, err := kindOrder(ekKind, prefer)
	if err != nil {
		return nil, err
	}
	d := &Device{t: withRetry(t), kv: kv}
	d.ek = chooseEK(d.t, order)
	return d, nil
}

// Close closes the TPM.
func (d *Device) Close() error { return d.t.Close() }

// EKKind says which EK the device uses.
func (d *Device) EKKind() string { return d.ek.slot.Kind }

// EKSlot names where the EK's certificate lives (the profile's L-1, H-3...).
func (d *Device) EKSlot() string { return d.ek.slot.Name }

// HasEKCert reports whether the TPM holds a certificate for its EK.
func (d *Device) HasEKCert() bool { return len(d.ek.cert) > 0 }

// EKChainLen is how many intermediate CA certificates the TPM keeps for
// its EK's chain.
func (d *Device) EKChainLen() int { return len(d.ek.chain) }

// readNV reads a whole NV index.
func readNV(t transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if err != nil {
		return nil, err
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	size := int(pub.DataSize)
	if size == 0 || size > maxNVRead {
		return nil, fmt.Errorf("NV index %#x holds %d bytes", index, size)
	}
	out := make([]byte, 0, size)
	for len(out) < size {
		n := min(size-len(out), maxNVChunk)
		r, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: index, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
			Size:       uint16(n),
			Offset:     uint16(len(out)),
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("read NV index %#x: %w", index, err)
		}
		if len(r.Data.Buffer) != n {
			return nil, fmt.Errorf("read NV index %#x: short read", index)
		}
		out = append(out, r.Data.Buffer...)
	}
	return out, nil
}

// loaded is a transient object; flush unloads it.
type loaded struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public tpm2.TPMTPublic
	raw    []byte // the TPMT_PUBLIC as the TPM returned it
}

func (d *Device) flush(objs ...*loaded) {
	for _, o := range objs {
		if o != nil {
			_, _ = tpm2.FlushContext{FlushHandle: o.handle}.Execute(d.t)
		}
	}
}

func (d *Device) createPrimary(hierarchy tpm2.TPMHandle, tmpl tpm2.TPMTPublic) (*loaded, error) {
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: hierarchy, InPublic: tpm2.New2B(tmpl)}.Execute(d.t)
	if err != nil {
		return nil, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		d.flush(&loaded{handle: rsp.ObjectHandle})
		return nil, err
	}
	return &loaded{handle: rsp.ObjectHandle, name: rsp.Name, public: *pub, raw: rsp.OutPublic.Bytes()}, nil
}

func (d *Device) ekObject() (*loaded, error) {
	ek, err := d.createPrimary(tpm2.TPMRHEndorsement, d.ek.tmpl)
	if err != nil {
		return nil, fmt.Errorf("TPM: create EK: %w", err)
	}
	return ek, nil
}

func (d *Device) srk() (*loaded, error) {
	srk, err := d.createPrimary(tpm2.TPMRHOwner, tpm2.ECCSRKTemplate)
	if err != nil {
		return nil, fmt.Errorf("TPM: create SRK: %w", err)
	}
	return srk, nil
}

// akTemplate is a restricted ECDSA P-256 signing key: it signs only
// structures the TPM made (quotes), never outside data posing as one.
var akTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
		NoDA: true, Restricted: true, SignEncrypt: true,
	},
	Parameters: ecdsaP256,
	Unique:     tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// ecdsaP256 are the parameters of the TPM's ECDSA P-256 signing keys (the
// attestation key and the device key).
var ecdsaP256 = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
	Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
	Scheme: tpm2.TPMTECCScheme{
		Scheme:  tpm2.TPMAlgECDSA,
		Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
	},
	CurveID: tpm2.TPMECCNistP256,
	KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
})

// blob is a TPM-wrapped object under the SRK, as kept in the KV.
type blob struct {
	Public  []byte `json:"public"`  // TPM2B_PUBLIC
	Private []byte `json:"private"` // TPM2B_PRIVATE
}

func (d *Device) readBlob(key string) (*blob, error) {
	raw, err := d.kv.ReadState(key)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var b blob
	if err := json.Unmarshal(raw, &b); err != nil || len(b.Public) == 0 || len(b.Private) == 0 {
		return nil, fmt.Errorf("TPM: stored %s is damaged", key)
	}
	return &b, nil
}

// createBlob creates an object under the SRK and keeps its blob.
func (d *Device) createBlob(srk *loaded, key string, tmpl tpm2.TPMTPublic, data []byte) (*blob, error) {
	sens := tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{}}
	if data != nil {
		sens.Sensitive.Data = tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: data})
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: tpm2.PasswordAuth(nil)},
		InSensitive:  sens,
		InPublic:     tpm2.New2B(tmpl),
	}.Execute(d.t)
	if err != nil {
		return nil, fmt.Errorf("TPM: create %s: %w", key, err)
	}
	b := &blob{Public: tpm2.Marshal(rsp.OutPublic), Private: tpm2.Marshal(rsp.OutPrivate)}
	raw, _ := json.Marshal(b)
	if err := d.kv.WriteState(key, raw); err != nil {
		return nil, err
	}
	return b, nil
}

// ErrForeignTPM means a key blob in the state does not load in this TPM:
// the state was made with another TPM (a copied disk) or the TPM was
// cleared since.
var ErrForeignTPM = errors.New("the state's TPM keys do not load in this TPM: the state was made on other hardware (a copied disk?) or this TPM was cleared")

func (d *Device) loadBlob(srk *loaded, key string, b *blob) (*loaded, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](b.Public)
	if err != nil {
		return nil, fmt.Errorf("TPM: stored %s is damaged: %w", key, err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](b.Private)
	if err != nil {
		return nil, fmt.Errorf("TPM: stored %s is damaged: %w", key, err)
	}
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv,
		InPublic:     *pub,
	}.Execute(d.t)
	if err != nil {
		var rc tpm2.TPMRC
		if errors.As(err, &rc) {
			return nil, fmt.Errorf("%w (%s: %v)", ErrForeignTPM, key, err)
		}
		return nil, fmt.Errorf("TPM: load %s: %w", key, err)
	}
	contents, err := pub.Contents()
	if err != nil {
		d.flush(&loaded{handle: rsp.ObjectHandle})
		return nil, err
	}
	return &loaded{handle: rsp.ObjectHandle, name: rsp.Name, public: *contents, raw: pub.Bytes()}, nil
}

// ak loads the attestation key, creating it on first use.
func (d *Device) ak(srk *loaded) (*loaded, error) {
	b, err := d.readBlob(akKey)
	if err != nil {
		return nil, err
	}
	if b == nil {
		if b, err = d.createBlob(srk, akKey, akTemplate, nil); err != nil {
			return nil, err
		}
	}
	return d.loadBlob(srk, akKey, b)
}

// Identity returns what the device presents to the server: its EK, the
// EK's certificate if the TPM holds one, and its AK.
func (d *Device) Identity() (wire.ChallengeRequest, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ek, err := d.ekObject()
	if err != nil {
		return wire.ChallengeRequest{}, err
	}
	defer d.flush(ek)
	srk, err := d.srk()
	if err != nil {
		return wire.ChallengeRequest{}, err
	}
	defer d.flush(srk)
	ak, err := d.ak(srk)
	if err != nil {
		return wire.ChallengeRequest{}, err
	}
	defer d.flush(ak)
	req := wire.ChallengeRequest{EKPublic: ek.raw, EKCertificate: slices.Clone(d.ek.cert), AKPublic: ak.raw}
	for _, c := range d.ek.chain {
		req.EKChain = append(req.EKChain, slices.Clone(c))
	}
	return req, nil
}

// EKPublic returns the EK's public area.
func (d *Device) EKPublic() (tpm2.TPMTPublic, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ek, err := d.ekObject()
	if err != nil {
		return tpm2.TPMTPublic{}, err
	}
	defer d.flush(ek)
	return ek.public, nil
}

// EKHash names this TPM as servers and allow-lists do.
func (d *Device) EKHash() (string, error) {
	pub, err := d.EKPublic()
	if err != nil {
		return "", err
	}
	k, err := tpm2.Pub(pub)
	if err != nil {
		return "", err
	}
	return wire.EKHash(k)
}

// validChallenge refuses a challenge no honest server sends.
func validChallenge(c wire.ChallengeResponse) error {
	switch {
	case c.ChallengeID == "" || len(c.ChallengeID) > 64:
		return errors.New("challenge: bad id")
	case len(c.CredentialBlob) == 0 || len(c.CredentialBlob) > wire.MaxTPMBlob,
		len(c.EncryptedSecret) == 0 || len(c.EncryptedSecret) > wire.MaxTPMBlob:
		return errors.New("challenge: credential missing or too large")
	case len(c.Nonce) < 16 || len(c.Nonce) > 64:
		return errors.New("challenge: nonce must be 16 to 64 bytes")
	case len(c.PCRs) == 0 || len(c.PCRs) > wire.MaxQuotedPCRs:
		return errors.New("challenge: PCR selection empty or too large")
	}
	for _, p := range c.PCRs {
		if p < 0 || p >= wire.MaxQuotedPCRs {
			return fmt.Errorf("challenge: PCR %d out of range", p)
		}
	}
	return nil
}

// Answer activates the challenge's credential with the EK for the AK, and
// quotes the PCRs it names over its nonce.
func (d *Device) Answer(c wire.ChallengeResponse) (wire.Evidence, error) {
	if err := validChallenge(c); err != nil {
		return wire.Evidence{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	srk, err := d.srk()
	if err != nil {
		return wire.Evidence{}, err
	}
	ak, err := d.ak(srk)
	d.flush(srk)
	if err != nil {
		return wire.Evidence{}, err
	}
	defer d.flush(ak)
	auth, err := ekAuth(d.ek.tmpl)
	if err != nil {
		return wire.Evidence{}, err
	}
	ek, err := d.ekObject()
	if err != nil {
		return wire.Evidence{}, err
	}
	act, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: ak.handle, Name: ak.name, Auth: tpm2.PasswordAuth(nil)},
		KeyHandle:      tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: auth},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: c.CredentialBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: c.EncryptedSecret},
	}.Execute(d.t)
	d.flush(ek)
	if err != nil {
		return wire.Evidence{}, fmt.Errorf("TPM: activate credential (the challenge is not for this TPM's EK and AK): %w", err)
	}
	pcrs := slices.Clone(c.PCRs)
	slices.Sort(pcrs)
	pcrs = slices.Compact(pcrs)
	sel := make([]uint, len(pcrs))
	for i, p := range pcrs {
		sel[i] = uint(p)
	}
	q, err := tpm2.Quote{
		SignHandle:     tpm2.AuthHandle{Handle: ak.handle, Name: ak.name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: c.Nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(sel...),
		}}},
	}.Execute(d.t)
	if err != nil {
		return wire.Evidence{}, fmt.Errorf("TPM: quote: %w", err)
	}
	values, err := d.readPCRs(pcrs)
	if err != nil {
		return wire.Evidence{}, err
	}
	// The firmware's log is complete once the system runs; it is read at
	// each quote all the same, so that it is the log of this very boot.
	eventLog, err := readEventLog(d.eventLog)
	if err != nil {
		return wire.Evidence{}, err
	}
	return wire.Evidence{
		EventLog:    eventLog,
		ChallengeID: c.ChallengeID,
		Secret:      act.CertInfo.Buffer,
		Quote:       q.Quoted.Bytes(),
		Signature:   tpm2.Marshal(q.Signature),
		PCRs:        values,
	}, nil
}

// readPCRs reads PCRs of the SHA-256 bank, one at a time (a TPM returns at
// most eight digests per command).
func (d *Device) readPCRs(pcrs []int) ([]wire.PCRValue, error) {
	out := make([]wire.PCRValue, 0, len(pcrs))
	for _, p := range pcrs {
		r, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(uint(p)),
		}}}}.Execute(d.t)
		if err != nil {
			return nil, fmt.Errorf("TPM: read PCR %d: %w", p, err)
		}
		if len(r.PCRValues.Digests) != 1 || len(r.PCRValues.Digests[0].Buffer) != 32 {
			return nil, fmt.Errorf("TPM: PCR %d: the SHA-256 bank is not allocated", p)
		}
		out = append(out, wire.PCRValue{Index: p, Digest: r.PCRValues.Digests[0].Buffer})
	}
	return out, nil
}
