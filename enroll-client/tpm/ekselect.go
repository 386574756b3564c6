package tpm

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edge-enroll/enroll/pkg/ekprofile"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// ekChoice is the EK a device presents: where it lives, the template it is
// made from, and what the TPM holds to certify it.
type ekChoice struct {
	slot  ekprofile.Slot
	tmpl  tpm2.TPMTPublic
	cert  []byte
	chain [][]byte
}

// kindOrder is the order kinds are looked for in: an explicit kind alone;
// for auto, the fleet's preference, then every other kind the profile
// defines (a certified EK of a kind the fleet did not name beats none).
func kindOrder(kind string, prefer []string) ([]string, error) {
	if kind != EKAuto && kind != "" {
		k, err := ekprofile.ParseKinds([]string{kind})
		if err != nil {
			return nil, fmt.Errorf("TPM: %w", err)
		}
		return k, nil
	}
	order, err := ekprofile.ParseKinds(prefer)
	if err != nil {
		return nil, fmt.Errorf("TPM: the fleet's EK preference: %w", err)
	}
	if len(order) == 0 {
		order = slices.Clone(ekprofile.DefaultPreference)
	}
	for _, k := range ekprofile.DefaultPreference {
		if !slices.Contains(order, k) {
			order = append(order, k)
		}
	}
	return order, nil
}

// chooseEK finds the first slot, in kind order and low range first, that
// holds a certificate; without one anywhere, the first kind's default.
func chooseEK(t transport.TPM, order []string) ekChoice {
	var c ekChoice
	found := false
	for _, k := range order {
		for _, s := range ekprofile.SlotsOf(k) {
			if cert, err := readCert(t, s.CertIndex); err == nil {
				c, found = ekChoice{slot: s, cert: cert}, true
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		c.slot = ekprofile.SlotsOf(order[0])[0]
	}
	c.tmpl = c.slot.Template
	if raw, err := readNV(t, c.slot.TemplateIndex); err == nil {
		if tmpl, err := ekprofile.TemplateFromNV(c.slot, raw); err == nil {
			c.tmpl = tmpl
		}
	}
	if c.slot.NonceIndex != 0 {
		if nonce, err := readNV(t, c.slot.NonceIndex); err == nil {
			if tmpl, err := ekprofile.ApplyNonce(c.tmpl, nonce); err == nil {
				c.tmpl = tmpl
			}
		}
	}
	if found {
		c.chain = readChain(t)
	}
	return c
}

// readChain reads the intermediate CA certificates of the EK's chain that
// the TPM keeps in the profile's chain range, up to the wire's limits.
func readChain(t transport.TPM) [][]byte {
	rsp, err := tpm2.GetCapability{
		Capability: tpm2.TPMCapHandles, Property: uint32(ekprofile.ChainFirst),
		PropertyCount: uint32(ekprofile.ChainLast - ekprofile.ChainFirst + 1),
	}.Execute(t)
	if err != nil {
		return nil
	}
	handles, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		return nil
	}
	var out [][]byte
	total := 0
	for _, h := range handles.Handle {
		if h < ekprofile.ChainFirst || h > ekprofile.ChainLast {
			continue
		}
		raw, err := readNV(t, h)
		if err != nil {
			continue
		}
		for _, der := range splitDER(raw) {
			if len(out) == wire.MaxEKChain || total+len(der) > wire.MaxEKChainBytes {
				return out
			}
			out, total = append(out, der), total+len(der)
		}
	}
	return out
}

// splitDER cuts an NV area into the DER SEQUENCEs it holds back to back,
// stopping at the first byte that does not start one (NV padding).
func splitDER(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		var raw asn1.RawValue
		rest, err := asn1.Unmarshal(b, &raw)
		if err != nil || raw.Class != asn1.ClassUniversal || raw.Tag != asn1.TagSequence || !raw.IsCompound || len(raw.FullBytes) > wire.MaxEKCert {
			break
		}
		out = append(out, raw.FullBytes)
		b = rest
	}
	return out
}

// readCert reads an EK certificate: the DER object at the start of its NV
// area (areas are often padded).
func readCert(t transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	raw, err := readNV(t, index)
	if err != nil {
		return nil, err
	}
	certs := splitDER(raw)
	if len(certs) == 0 {
		return nil, fmt.Errorf("NV index %#x holds no DER certificate", index)
	}
	return certs[0], nil
}

// ekAuth authorizes the EK for ActivateCredential as its template's
// policy asks: PolicySecret on the endorsement hierarchy (PolicyA, the low
// range), followed by PolicyOR(PolicyA, PolicyC) where the template holds
// PolicyB (the high range), in a session of the EK's name algorithm.
func ekAuth(tmpl tpm2.TPMTPublic) (tpm2.Session, error) {
	alg := tmpl.NameAlg
	a, err := ekprofile.PolicyA(alg)
	if err != nil {
		return nil, fmt.Errorf("TPM: EK name algorithm: %w", err)
	}
	secret := func(t transport.TPM, h tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
		_, err := tpm2.PolicySecret{AuthHandle: tpm2.TPMRHEndorsement, PolicySession: h, NonceTPM: nonce}.Execute(t)
		return err
	}
	if slices.Equal(tmpl.AuthPolicy.Buffer, a) {
		return tpm2.Policy(alg, 16, secret), nil
	}
	branches, err := ekprofile.PolicyORBranches(alg)
	if err != nil {
		return nil, err
	}
	b, err := ekprofile.PolicyOR(alg, branches)
	if err != nil {
		return nil, err
	}
	if slices.Equal(tmpl.AuthPolicy.Buffer, b) {
		return tpm2.Policy(alg, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
			if err := secret(t, h, nonce); err != nil {
				return err
			}
			list := make([]tpm2.TPM2BDigest, len(branches))
			for i, d := range branches {
				list[i] = tpm2.TPM2BDigest{Buffer: d}
			}
			_, err := tpm2.PolicyOr{PolicySession: h, PHashList: tpm2.TPMLDigest{Digests: list}}.Execute(t)
			return err
		}), nil
	}
	if tmpl.ObjectAttributes.UserWithAuth {
		return tpm2.PasswordAuth(nil), nil
	}
	return nil, errors.New("TPM: the EK's template has a policy this client does not know how to satisfy")
}
