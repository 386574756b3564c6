package wire_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// The largest challenge request Validate accepts still fits the server's
// body limit, base64 and all.
func TestLargestChallengeRequestFitsTheBody(t *testing.T) {
	req := wire.ChallengeRequest{
		Fleet: "acme", DeviceID: "d1", Ticket: strings.Repeat("t", 64),
		EKPublic: make([]byte, wire.MaxTPMPublic), AKPublic: make([]byte, wire.MaxTPMPublic),
		EKCertificate: make([]byte, wire.MaxEKCert),
	}
	for range wire.MaxEKChain {
		req.EKChain = append(req.EKChain, make([]byte, wire.MaxEKChainBytes/wire.MaxEKChain))
	}
	if err := req.Validate(); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(req)
	if len(body) > wire.MaxBodyBytes {
		t.Fatalf("%d bytes, over the %d the server reads", len(body), wire.MaxBodyBytes)
	}
}

func TestChallengeRequestChainLimits(t *testing.T) {
	base := wire.ChallengeRequest{Fleet: "acme", DeviceID: "d1", EKPublic: []byte{1}, AKPublic: []byte{1}, EKCertificate: []byte{1}}
	for name, chain := range map[string][][]byte{
		"too many":   make([][]byte, wire.MaxEKChain+1),
		"empty cert": {{}},
		"too large":  {make([]byte, wire.MaxEKCert+1)},
		"too much":   {make([]byte, wire.MaxEKCert), make([]byte, wire.MaxEKCert), make([]byte, wire.MaxEKCert), make([]byte, wire.MaxEKCert)},
	} {
		r := base
		r.EKChain = chain
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "ek_chain") {
			t.Errorf("%s: %v", name, err)
		}
	}
	r := base
	r.EKCertificate, r.EKChain = nil, [][]byte{{1}}
	if err := r.Validate(); err == nil {
		t.Error("a chain without a certificate was accepted")
	}
}
