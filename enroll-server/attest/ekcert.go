package attest

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// Object identifiers of the TCG EK Credential Profile.
var (
	oidSubjectAltName  = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

// TPMInfo is what an EK certificate says about its TPM.
type TPMInfo struct {
	Manufacturer string `json:"manufacturer"` // "id:" and 8 hex digits, e.g. id:00001014
	Model        string `json:"model,omitempty"`
	Version      string `json:"version,omitempty"`
}

var manufacturerID = regexp.MustCompile(`^id:[0-9A-Fa-f]{8}$`)

// parseTPMSAN reads the TPM directory name from an EK certificate's subject
// alternative name. Go's x509 package leaves a critical SAN that holds only
// a directory name unhandled, so the chain cannot be verified until this
// has read it.
func parseTPMSAN(der []byte) (TPMInfo, error) {
	var names asn1.RawValue
	rest, err := asn1.Unmarshal(der, &names)
	if err != nil || len(rest) > 0 || names.Class != asn1.ClassUniversal || names.Tag != asn1.TagSequence || !names.IsCompound {
		return TPMInfo{}, errors.New("subject alternative name: not a GeneralNames sequence")
	}
	var info TPMInfo
	found := false
	for in := names.Bytes; len(in) > 0; {
		var gn asn1.RawValue
		if in, err = asn1.Unmarshal(in, &gn); err != nil {
			return TPMInfo{}, fmt.Errorf("subject alternative name: %w", err)
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 4 || !gn.IsCompound {
			continue // not a directoryName
		}
		var rdns []asn1.RawValue // Name ::= SEQUENCE OF RelativeDistinguishedName
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(gn.Bytes, &seq); err != nil || len(rest) > 0 || seq.Tag != asn1.TagSequence {
			return TPMInfo{}, errors.New("subject alternative name: malformed directory name")
		}
		for b := seq.Bytes; len(b) > 0; {
			var rdn asn1.RawValue
			if b, err = asn1.Unmarshal(b, &rdn); err != nil || rdn.Tag != asn1.TagSet {
				return TPMInfo{}, errors.New("subject alternative name: malformed relative distinguished name")
			}
			rdns = append(rdns, rdn)
		}
		for _, rdn := range rdns {
			for b := rdn.Bytes; len(b) > 0; {
				var atv struct {
					Type  asn1.ObjectIdentifier
					Value asn1.RawValue
				}
				if b, err = asn1.Unmarshal(b, &atv); err != nil {
					return TPMInfo{}, errors.New("subject alternative name: malformed attribute")
				}
				v, err := attrString(atv.Value)
				if err != nil {
					return TPMInfo{}, fmt.Errorf("subject alternative name: attribute %v: %w", atv.Type, err)
				}
				switch {
				case atv.Type.Equal(oidTPMManufacturer):
					info.Manufacturer, found = v, true
				case atv.Type.Equal(oidTPMModel):
					info.Model = v
				case atv.Type.Equal(oidTPMVersion):
					info.Version = v
				}
			}
		}
	}
	if !found {
		return TPMInfo{}, errors.New("subject alternative name names no TPM manufacturer")
	}
	if !manufacturerID.MatchString(info.Manufacturer) {
		return TPMInfo{}, fmt.Errorf("TPM manufacturer %q is not of the form id:XXXXXXXX", info.Manufacturer)
	}
	return info, nil
}

// attrString reads a directory string attribute value.
func attrString(v asn1.RawValue) (string, error) {
	if v.Class != asn1.ClassUniversal || len(v.Bytes) > 128 {
		return "", errors.New("not a short string")
	}
	switch v.Tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String:
		for _, c := range v.Bytes {
			if c < 0x20 || c > 0x7e {
				return "", errors.New("not printable")
			}
		}
		return string(v.Bytes), nil
	}
	return "", fmt.Errorf("unexpected string type %d", v.Tag)
}

// CAs are the manufacturer certificate authorities EK certificates chain
// to: self-signed certificates are roots, the others intermediates.
type CAs struct {
	roots, intermediates *x509.CertPool
	n                    int
}

// ParseCAs reads a PEM bundle of manufacturer CA certificates.
func ParseCAs(pemData []byte) (*CAs, error) {
	c := &CAs{roots: x509.NewCertPool(), intermediates: x509.NewCertPool()}
	for len(pemData) > 0 {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("EK CA bundle: %w", err)
		}
		if !cert.IsCA {
			return nil, fmt.Errorf("EK CA bundle: %q is not a CA certificate", cert.Subject)
		}
		if cert.CheckSignatureFrom(cert) == nil {
			c.roots.AddCert(cert)
		} else {
			c.intermediates.AddCert(cert)
		}
		c.n++
	}
	if c.n == 0 {
		return nil, errors.New("EK CA bundle holds no certificate")
	}
	return c, nil
}

// VerifyEKCert parses an EK certificate, reads its TPM directory name and
// verifies its chain to the CAs at now. chain holds intermediates the
// device sent (from its TPM's NV): they may link the certificate to one of
// the fleet's roots, and are never trusted as roots themselves.
func (c *CAs) VerifyEKCert(der []byte, chain [][]byte, now time.Time) (*x509.Certificate, TPMInfo, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, TPMInfo{}, fmt.Errorf("EK certificate: %w", err)
	}
	var info TPMInfo
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			if info, err = parseTPMSAN(ext.Value); err != nil {
				return nil, TPMInfo{}, fmt.Errorf("EK certificate: %w", err)
			}
		}
	}
	if info.Manufacturer == "" {
		return nil, TPMInfo{}, errors.New("EK certificate has no TPM subject alternative name")
	}
	// The SAN is now handled.
	cert.UnhandledCriticalExtensions = slices.DeleteFunc(cert.UnhandledCriticalExtensions,
		func(id asn1.ObjectIdentifier) bool { return id.Equal(oidSubjectAltName) })
	if c == nil {
		return nil, TPMInfo{}, errors.New("EK certificate: no manufacturer CA is configured for this fleet")
	}
	intermediates, err := c.withChain(chain)
	if err != nil {
		return nil, TPMInfo{}, err
	}
	_, err = cert.Verify(x509.VerifyOptions{
		Roots: c.roots, Intermediates: intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, TPMInfo{}, fmt.Errorf("EK certificate: %w", err)
	}
	if err := checkEKPurpose(cert); err != nil {
		return nil, TPMInfo{}, fmt.Errorf("EK certificate: %w", err)
	}
	return cert, info, nil
}

// oidTCGKpEKCertificate is tcg-kp-EKCertificate, the extended key usage of
// an EK certificate (TCG EK Credential Profile).
var oidTCGKpEKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 1}

// checkEKPurpose refuses a certificate issued for something else than an
// EK: a CA; key usages other than decrypting (RSA) or agreeing (ECC) keys;
// extended key usages that do not name an EK certificate.
func checkEKPurpose(cert *x509.Certificate) error {
	if cert.IsCA {
		return errors.New("it is a CA certificate, not an EK's")
	}
	if ku := cert.KeyUsage; ku != 0 {
		if ku&(x509.KeyUsageKeyEncipherment|x509.KeyUsageKeyAgreement) == 0 {
			return errors.New("its key usage allows neither key encipherment nor key agreement, as an EK's must")
		}
		if ku&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
			return errors.New("its key usage allows signing certificates")
		}
	}
	if len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		if !slices.ContainsFunc(cert.UnknownExtKeyUsage, oidTCGKpEKCertificate.Equal) {
			return errors.New("its extended key usage does not name an EK certificate (tcg-kp-EKCertificate, 2.23.133.8.1)")
		}
	}
	return nil
}

// withChain adds the device's intermediates to the fleet's own. Each must
// parse and be a CA certificate; a device's self-signed certificate lands
// among the intermediates too, where it anchors nothing.
func (c *CAs) withChain(chain [][]byte) (*x509.CertPool, error) {
	if len(chain) == 0 {
		return c.intermediates, nil
	}
	if len(chain) > wire.MaxEKChain {
		return nil, fmt.Errorf("EK chain: more than %d certificates", wire.MaxEKChain)
	}
	pool := c.intermediates.Clone()
	for i, der := range chain {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("EK chain certificate %d: %w", i, err)
		}
		if !cert.IsCA || !cert.BasicConstraintsValid {
			return nil, fmt.Errorf("EK chain certificate %d (%q) is not a CA certificate", i, cert.Subject)
		}
		pool.AddCert(cert)
	}
	return pool, nil
}
