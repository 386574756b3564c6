// Package identity is a device's own identity after its first enrollment:
// a device key whose public half the server registers with the device
// record, and the claims the device signs with it to refresh its secret ID
// or to rejoin once every Vault credential it held is dead.
//
// The fleet's shared bootstrap credential proves membership of a fleet
// once; from then on, what keeps a device enrolled is this key and the
// join-state sequence the claims carry. Both sides import this package; it
// imports neither.
package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Purposes a claim is signed for. A signature made for one is never
// accepted for another.
const (
	PurposeRefresh = "refresh"
	PurposeRejoin  = "rejoin"
)

// MaxPublicKeyLen bounds an encoded public key (base64 of PKIX DER); a
// P-384 key is well below it.
const MaxPublicKeyLen = 256

// MaxSignatureLen bounds a signature (an ECDSA P-384 ASN.1 signature is at
// most 104 bytes).
const MaxSignatureLen = 160

// Claim is what a device signs to prove its identity: a server nonce that
// makes it single-use, the request it authorises (idempotency key) and the
// join-state sequence the device holds. NewKey, when set, is the next
// device key, registered once the request is acknowledged: signed by the
// current key, so only the holder of the current key can rotate it.
type Claim struct {
	Purpose        string
	Fleet          string
	DeviceID       string
	IdempotencyKey string
	Nonce          []byte
	Sequence       uint64
	NewKey         string
}

// domain separates these signatures from anything else a key might sign.
const domain = "edge-enroll device identity v1"

// Message is the exact byte string that is signed: every field length
// prefixed, so no two claims share an encoding.
func (c Claim) Message() []byte {
	var b []byte
	field := func(v []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	field([]byte(domain))
	field([]byte(c.Purpose))
	field([]byte(c.Fleet))
	field([]byte(c.DeviceID))
	field([]byte(c.IdempotencyKey))
	field(c.Nonce)
	b = binary.BigEndian.AppendUint64(b, c.Sequence)
	field([]byte(c.NewKey))
	return b
}

// ErrBadSignature: the signature does not verify with the key.
var ErrBadSignature = errors.New("signature does not verify with the device key")

// ParsePublicKey decodes a device public key: base64 (standard encoding) of
// its PKIX DER form, Ed25519 or ECDSA P-256/P-384. Anything else is refused.
func ParsePublicKey(s string) (crypto.PublicKey, error) {
	if s == "" {
		return nil, errors.New("device key: missing")
	}
	if len(s) > MaxPublicKeyLen {
		return nil, fmt.Errorf("device key: longer than %d bytes", MaxPublicKeyLen)
	}
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("device key: not base64")
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, errors.New("device key: not a PKIX public key")
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, errors.New("device key: ECDSA keys must be P-256 or P-384")
		}
		return k, nil
	}
	return nil, fmt.Errorf("device key: %T keys are not accepted (Ed25519 or ECDSA P-256/P-384)", pub)
}

// Verify checks sig over msg with an encoded public key. Ed25519 signs the
// message itself; ECDSA signs its SHA-256 digest (ASN.1 signature), which
// is what a TPM signing key produces.
func Verify(publicKey string, msg, sig []byte) error {
	pub, err := ParsePublicKey(publicKey)
	if err != nil {
		return err
	}
	if len(sig) == 0 || len(sig) > MaxSignatureLen {
		return ErrBadSignature
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if ed25519.Verify(k, msg, sig) {
			return nil
		}
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		if ecdsa.VerifyASN1(k, d[:], sig) {
			return nil
		}
	}
	return ErrBadSignature
}

// Fingerprint names a public key for people and logs: hex SHA-256 of its
// encoded form, first 16 characters.
func Fingerprint(publicKey string) string {
	if publicKey == "" {
		return ""
	}
	h := sha256.Sum256([]byte(publicKey))
	return hex.EncodeToString(h[:8])
}

// Signer is a device key: its encoded public half, and signatures over
// claims.
type Signer interface {
	Public() string
	Sign(msg []byte) ([]byte, error)
}

// Ed25519 is a device key held in the device's state (sealed with the state
// where the state is sealed to a TPM).
type Ed25519 struct{ priv ed25519.PrivateKey }

// NewEd25519 makes a fresh key and returns it with its 32-byte seed, which
// is all the state needs to keep.
func NewEd25519() (*Ed25519, []byte, error) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, err
	}
	return &Ed25519{priv: priv}, priv.Seed(), nil
}

// Ed25519FromSeed rebuilds a key from its seed.
func Ed25519FromSeed(seed []byte) (*Ed25519, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("device key: seed of %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return &Ed25519{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public implements Signer.
func (k *Ed25519) Public() string {
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		panic(err) // an Ed25519 key always marshals
	}
	return base64.StdEncoding.EncodeToString(der)
}

// Sign implements Signer.
func (k *Ed25519) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(k.priv, msg), nil }
