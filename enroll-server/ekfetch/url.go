// Package ekfetch fetches EK certificates that a TPM's manufacturer
// publishes instead of writing them into the TPM (firmware TPMs: Intel
// PTT, AMD fTPM), at a URL derived from the EK's public key. The server
// fetches them, where a fleet allows it, and verifies what it gets like
// any other EK certificate: a fetched certificate is trusted no more than
// one the device sent.
package ekfetch

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Formats of manufacturer URLs.
const (
	Intel = "intel"
	AMD   = "amd"
)

// Default base URLs of the manufacturers' services.
var DefaultBase = map[string]string{
	Intel: "https://ekop.intel.com/ekcertservice/",
	AMD:   "https://ftpm.amd.com/pki/aia/",
}

// URL is where the manufacturer publishes pub's certificate under base.
func URL(format, base string, pub crypto.PublicKey) (string, error) {
	var name string
	var err error
	switch format {
	case Intel:
		name, err = intelName(pub)
	case AMD:
		name, err = amdName(pub)
	default:
		return "", fmt.Errorf("unknown EK certificate URL format %q (want intel or amd)", format)
	}
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return base + name, nil
}

// intelName is the URL-escaped base64url of SHA-256 over the RSA modulus
// followed by the exponent 65537 (01 00 01), or over an ECC point's x and
// y (as tpm2-tools' tpm2_getekcertificate computes it).
func intelName(pub crypto.PublicKey) (string, error) {
	h := sha256.New()
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.E != 65537 {
			return "", errors.New("the manufacturer's URL is defined for the exponent 65537 only")
		}
		h.Write(k.N.Bytes())
		h.Write([]byte{0x01, 0x00, 0x01})
	case *ecdsa.PublicKey:
		x, y, err := point(k)
		if err != nil {
			return "", err
		}
		h.Write(x)
		h.Write(y)
	default:
		return "", fmt.Errorf("no manufacturer URL for a %T EK", pub)
	}
	return url.QueryEscape(base64.URLEncoding.EncodeToString(h.Sum(nil))), nil
}

// amdName is the first 16 bytes, in upper-case hex, of SHA-256 over
// 00 00 22 22, the exponent (4 bytes) and the modulus for RSA, or
// 00 00 44 44, x and y for ECC.
func amdName(pub crypto.PublicKey) (string, error) {
	h := sha256.New()
	switch k := pub.(type) {
	case *rsa.PublicKey:
		h.Write([]byte{0x00, 0x00, 0x22, 0x22})
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(k.E)))
		h.Write(k.N.Bytes())
	case *ecdsa.PublicKey:
		x, y, err := point(k)
		if err != nil {
			return "", err
		}
		h.Write([]byte{0x00, 0x00, 0x44, 0x44})
		h.Write(x)
		h.Write(y)
	default:
		return "", fmt.Errorf("no manufacturer URL for a %T EK", pub)
	}
	return strings.ToUpper(hex.EncodeToString(h.Sum(nil)[:16])), nil
}

// point is an ECC key's coordinates, each as long as the curve's field,
// as the TPM's public area holds them.
func point(k *ecdsa.PublicKey) (x, y []byte, err error) {
	raw, err := k.Bytes() // 04 || x || y
	if err != nil {
		return nil, nil, err
	}
	n := (len(raw) - 1) / 2
	return raw[1 : 1+n], raw[1+n:], nil
}
