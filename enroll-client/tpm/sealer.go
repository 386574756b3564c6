package tpm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
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

// sealTemplate is a keyed-hash object holding sealed data.
var sealTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgKeyedHash,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, UserWithAuth: true, NoDA: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
		Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
	}),
}

// DataKey returns the 32-byte key that protects the device's state,
// unsealed from the TPM; on first use it is made and sealed to the TPM's
// storage root key. The unseal answer travels encrypted (a session salted
// with the SRK), so it cannot be read off the TPM's bus.
func (d *Device) DataKey() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	srk, err := d.srk()
	if err != nil {
		return nil, err
	}
	defer d.flush(srk)
	b, err := d.readBlob(dataKeyKey)
	if err != nil {
		return nil, err
	}
	if b == nil {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if _, err := d.createBlob(srk, dataKeyKey, sealTemplate, key); err != nil {
			return nil, err
		}
		return key, nil
	}
	obj, err := d.loadBlob(srk, dataKeyKey, b)
	if err != nil {
		return nil, err
	}
	defer d.flush(obj)
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{
		Handle: obj.handle, Name: obj.name,
		Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.AESEncryption(128, tpm2.EncryptOut), tpm2.Salted(srk.handle, srk.public)),
	}}.Execute(d.t)
	if err != nil {
		return nil, fmt.Errorf("TPM: unseal the state's data key: %w", err)
	}
	if len(rsp.OutData.Buffer) != 32 {
		return nil, errors.New("TPM: the sealed data key has the wrong length")
	}
	return rsp.OutData.Buffer, nil
}
