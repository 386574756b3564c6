package tpm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
)

// sealedMagic starts every sealed record; a JSON record starts with '{'.
var sealedMagic = []byte("ENRS1\x00")

// Sealer encrypts the device's state records with the TPM-sealed data key
// (AES-256-GCM). A copy of the state is useless without this TPM.
type Sealer struct {
	aead cipher.AEAD
	ad   []byte
}

// NewSealer unseals the data key and binds records to context (the device
// ID and fleet), so that a record cannot be moved between devices either.
func (d *Device) NewSealer(context string) (*Sealer, error) {
	key, err := d.DataKey()
	if err != nil {
		return nil, err
	}
	return newSealer(key, context)
}

func newSealer(key []byte, context string) (*Sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead, ad: []byte(context)}, nil
}

// IsSealed reports whether a record was sealed.
func IsSealed(record []byte) bool { return bytes.HasPrefix(record, sealedMagic) }

// Seal encrypts a record.
func (s *Sealer) Seal(plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append(append(bytes.Clone(sealedMagic), nonce...), s.aead.Seal(nil, nonce, plain, s.ad)...)
	return out, nil
}

// ErrUnseal means a sealed record does not open with this TPM's key.
var ErrUnseal = errors.New("the device state does not decrypt with this TPM's data key: it was sealed on other hardware or altered")

// Open decrypts a sealed record.
func (s *Sealer) Open(record []byte) ([]byte, error) {
	if !IsSealed(record) {
		return nil, errors.New("record is not sealed")
	}
	rest := record[len(sealedMagic):]
	if len(rest) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, ErrUnseal
	}
	plain, err := s.aead.Open(nil, rest[:s.aead.NonceSize()], rest[s.aead.NonceSize():], s.ad)
	if err != nil {
		return nil, ErrUnseal
	}
	return plain, nil
}
