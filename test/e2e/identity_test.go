package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// identityCall is a refresh or rejoin as a device (or an impostor) sends
// it: a nonce from the server, the claim signed with key. mod may change
// the request after signing.
type identityCall struct {
	purpose  string // identity.PurposeRefresh or PurposeRejoin
	device   string
	key      ed25519.PrivateKey
	token    string
	sequence uint64
	newKey   string
	idemKey  string
	mod      func(*wire.IdentityRequest)
}

// challenge asks for a nonce; status and body as the server answered.
func (e *env) identityChallenge(device string) (int, wire.IdentityChallengeResponse, string) {
	e.t.Helper()
	status, body := e.post(wire.PathIdentityChallenge, fmt.Sprintf(`{"fleet":"acme","device_id":%q}`, device))
	var ch wire.IdentityChallengeResponse
	if status == 200 {
		if err := json.Unmarshal([]byte(body), &ch); err != nil {
			e.t.Fatal(err)
		}
	}
	return status, ch, body
}

// signedRequest builds the request for a challenge.
func (c identityCall) signedRequest(ch wire.IdentityChallengeResponse) wire.IdentityRequest {
	if c.idemKey == "" {
		c.idemKey = rand.Text()
	}
	req := wire.IdentityRequest{Fleet: fleet, DeviceID: c.device, IdempotencyKey: c.idemKey, Token: c.token,
		ChallengeID: ch.ChallengeID, Sequence: c.sequence, NewKey: c.newKey}
	req.Signature = ed25519.Sign(c.key, identity.Claim{Purpose: c.purpose, Fleet: fleet, DeviceID: c.device,
		IdempotencyKey: req.IdempotencyKey, Nonce: ch.Nonce, Sequence: c.sequence, NewKey: c.newKey}.Message())
	if c.mod != nil {
		c.mod(&req)
	}
	return req
}

// send posts a signed request to the refresh or rejoin endpoint.
func (e *env) sendIdentity(purpose string, req wire.IdentityRequest) (int, string) {
	e.t.Helper()
	raw, _ := json.Marshal(req)
	path := wire.PathRefresh
	if purpose == identity.PurposeRejoin {
		path = wire.PathRejoin
	}
	status, body := e.post(path, string(raw))
	if status == 200 {
		e.keep(jsonField(e.t, body, "wrapping_token"))
	}
	return status, body
}

// call runs a whole identity request: challenge, signature, request.
func (e *env) call(c identityCall) (int, string) {
	e.t.Helper()
	status, ch, body := e.identityChallenge(c.device)
	if status != 200 {
		return status, body
	}
	return e.sendIdentity(c.purpose, c.signedRequest(ch))
}

// deviceKey is the private key a device holds in its state.
func deviceKey(t testing.TB, st lifecycle.State) ed25519.PrivateKey {
	t.Helper()
	if len(st.DeviceKey) != ed25519.SeedSize {
		t.Fatalf("device %s holds no device key", st.DeviceID)
	}
	return ed25519.NewKeyFromSeed(st.DeviceKey)
}

func publicKeyOf(t testing.TB, k ed25519.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// serverRecord is what the server holds about a fleet, read through the
// admin API: devices, audit records, alerts, and each device's live secret
// IDs in Vault. Two equal records mean nothing was written in between.
func (e *env) serverRecord(devices ...string) string {
	e.t.Helper()
	var b strings.Builder
	for _, p := range []string{"/v1/admin/devices?fleet=acme", "/v1/admin/audit", "/v1/admin/alerts"} {
		status, body := e.get(p, e.vault.RootToken)
		if status != 200 {
			e.t.Fatalf("GET %s: %d %s", p, status, body)
		}
		b.WriteString(body)
	}
	for _, d := range devices {
		fmt.Fprintf(&b, "%s: %v\n", d, e.deviceSecretIDAccessors(d))
	}
	return b.String()
}

// Each request below proves less than it must: it is refused with a clear
// 4xx error, and the server's records and Vault are exactly as before.
func TestIdentityRefusalsWriteNothing(t *testing.T) {
	e := newEnv(t)
	a := e.enroll(e.newDevice("sensor-a", nil))
	b := e.enroll(e.newDevice("sensor-b", nil))
	c := e.enroll(e.newDevice("sensor-c", nil))
	// A challenge taken before the revocation would be one way round it.
	_, earlyC, _ := e.identityChallenge("sensor-c")
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/sensor-c/revoke", e.vault.RootToken, `{"reason":"stolen"}`); status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	refresh := identityCall{purpose: identity.PurposeRefresh, device: "sensor-a", key: deviceKey(t, a), token: a.Token, sequence: a.Sequence}

	// A replayed nonce: a first, good request uses it.
	_, used, _ := e.identityChallenge("sensor-a")
	replay := refresh.signedRequest(used)
	if status, body := e.sendIdentity(identity.PurposeRefresh, replay); status != 200 {
		t.Fatalf("the good refresh: %d %s", status, body)
	}
	a2 := refresh
	a2.sequence = a.Sequence // the refresh is not acknowledged: still the same

	cases := []struct {
		name       string
		run        func() (int, string)
		status     int
		code, text string
	}{
		{"refresh with another device's token", func() (int, string) {
			c := a2
			c.token = b.Token
			return e.call(c)
		}, 403, "proof_invalid", "not issued to this device"},
		{"refresh signed by another key", func() (int, string) {
			c := a2
			c.key = newKey(t)
			return e.call(c)
		}, 403, "proof_invalid", "does not verify"},
		{"another key, offered as the new key", func() (int, string) {
			c := a2
			k := newKey(t)
			c.key, c.newKey = k, publicKeyOf(t, k)
			return e.call(c)
		}, 403, "proof_invalid", "does not verify"},
		{"replayed nonce", func() (int, string) {
			return e.sendIdentity(identity.PurposeRefresh, replay)
		}, 409, "challenge_invalid", "already answered"},
		{"rejoin signed by another key", func() (int, string) {
			return e.call(identityCall{purpose: identity.PurposeRejoin, device: "sensor-b", key: newKey(t), sequence: b.Sequence})
		}, 403, "proof_invalid", "does not verify"},
		{"challenge for a revoked device", func() (int, string) {
			status, _, body := e.identityChallenge("sensor-c")
			return status, body
		}, 403, "rejected", "revoked"},
		{"rejoin of a revoked device", func() (int, string) {
			req := identityCall{purpose: identity.PurposeRejoin, device: "sensor-c", key: deviceKey(t, c), sequence: c.Sequence}.signedRequest(earlyC)
			return e.sendIdentity(identity.PurposeRejoin, req)
		}, 403, "rejected", "revoked"},
		{"rejoin of an unknown device", func() (int, string) {
			return e.call(identityCall{purpose: identity.PurposeRejoin, device: "sensor-x", key: newKey(t)})
		}, 404, "unknown_device", "no identity"},
		{"rejoin of an unknown device with a challenge of another", func() (int, string) {
			_, ch, _ := e.identityChallenge("sensor-b")
			return e.sendIdentity(identity.PurposeRejoin, identityCall{purpose: identity.PurposeRejoin, device: "sensor-x", key: newKey(t)}.signedRequest(ch))
		}, 404, "unknown_device", "no identity"},
		{"rejoin carrying a token", func() (int, string) {
			c := a2
			c.purpose = identity.PurposeRejoin
			return e.call(c)
		}, 400, "invalid_request", "token"},
	}
	for _, tc := range cases {
		before := e.serverRecord("sensor-a", "sensor-b", "sensor-c")
		status, body := tc.run()
		if status != tc.status || errorCode(t, body) != tc.code || !strings.Contains(body, tc.text) {
			t.Errorf("%s: %d %s, want %d %s mentioning %q", tc.name, status, body, tc.status, tc.code, tc.text)
		}
		if after := e.serverRecord("sensor-a", "sensor-b", "sensor-c"); after != before {
			t.Errorf("%s: the server's records changed:\nbefore %s\nafter  %s", tc.name, before, after)
		}
	}
}

// Vault folds AppRole role names to lower case; the server accepts device
// IDs in lower case only, on every path, so that "SENSOR-03" can never
// reach the role of a revoked "sensor-03".
func TestMixedCaseDeviceIDsAreRefusedEverywhere(t *testing.T) {
	e := newEnv(t)
	st := e.enroll(e.newDevice("sensor-03", nil))
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/sensor-03/revoke", e.vault.RootToken, `{"reason":"stolen"}`); status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	before := e.serverRecord("sensor-03")
	id := "SENSOR-03"
	bodies := map[string]string{
		wire.PathEnroll:            enrollBody(e.bootstrapLogin(), id, "key-case000000000001"),
		wire.PathAdmit:             fmt.Sprintf(`{"fleet":"acme","device_id":%q}`, id),
		wire.PathIdentityChallenge: fmt.Sprintf(`{"fleet":"acme","device_id":%q}`, id),
		wire.PathAck: fmt.Sprintf(`{"fleet":"acme","device_id":%q,"enrollment_id":%q,"token":%q,"secret_id_accessor":%q}`,
			id, st.EnrollmentID, st.Token, st.SecretIDAccessor),
		wire.PathReport: fmt.Sprintf(`{"fleet":"acme","device_id":%q,"enrollment_id":%q,"idempotency_key":%q,"problem":"wrapping_token_invalid"}`,
			id, st.EnrollmentID, st.IdempotencyKey),
	}
	for path, body := range bodies {
		status, resp := e.post(path, body)
		if status != 400 || errorCode(t, resp) != "invalid_request" || !strings.Contains(resp, "lower case") {
			t.Errorf("%s with %s: %d %s, want 400 invalid_request naming the lower-case form", path, id, status, resp)
		}
	}
	for _, purpose := range []string{identity.PurposeRefresh, identity.PurposeRejoin} {
		c := identityCall{purpose: purpose, device: id, key: deviceKey(t, st), sequence: st.Sequence}
		if purpose == identity.PurposeRefresh {
			c.token = st.Token
		}
		status, resp := e.sendIdentity(purpose, c.signedRequest(wire.IdentityChallengeResponse{ChallengeID: "x", Nonce: []byte("n")}))
		if status != 400 || errorCode(t, resp) != "invalid_request" {
			t.Errorf("%s with %s: %d %s", purpose, id, status, resp)
		}
	}
	if status, resp := e.adminCall("POST", "/v1/admin/devices/acme/"+id+"/readmit", e.vault.RootToken, ""); status != 400 {
		t.Errorf("readmit %s: %d %s", id, status, resp)
	}
	if after := e.serverRecord("sensor-03"); after != before {
		t.Errorf("the server's records changed:\nbefore %s\nafter  %s", before, after)
	}
	// The client refuses such an ID in its configuration, naming the form.
	d := e.deviceDir(id)
	if code, _, errOut := e.cli("run", "-once", "-config", d.config); code == 0 || !strings.Contains(errOut, `"sensor-03"`) {
		t.Errorf("the client with device_id %s: exit %d, %s", id, code, errOut)
	}
}

// A wiped device's request for its enrolled ID is held; someone with the
// image's bundle sends their own request for the same ID to have it
// approved in its place: it is turned away while the first waits, and the
// administrator approves the device's request by the enrollment ID the
// device shows. The impostor never gets a credential.
func TestHeldRequestCannotBeSwapped(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("sensor-w", nil))
	wiped := e.newDevice("sensor-w", nil) // a factory reset: a new state
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- wiped.machine.Run(ctx, true) }()
	var dev wire.Device
	waitFor(t, 30*time.Second, "the wiped device's request held", func() bool {
		e.adminJSON("GET", "/v1/admin/devices/acme/sensor-w", "", &dev)
		return dev.HeldEnrollment != "" && wiped.lastStatus().EnrollmentID == dev.HeldEnrollment
	})
	// The impostor's own request is turned away, again and again.
	for i := range 3 {
		status, body := e.post(wire.PathEnroll, enrollBody(e.bootstrapLogin(), "sensor-w", fmt.Sprintf("key-impostor%08d", i)))
		if status != 409 || errorCode(t, body) != "enrollment_in_progress" || !strings.Contains(body, dev.HeldEnrollment) {
			t.Fatalf("the impostor's request: %d %s", status, body)
		}
	}
	var again wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/sensor-w", "", &again)
	if again.HeldEnrollment != dev.HeldEnrollment || again.HeldFacts == nil || again.HeldKey == "" {
		t.Fatalf("the held request changed or is not shown: %+v", again)
	}
	e.adminJSON("POST", "/v1/admin/devices/acme/sensor-w/approve", `{"enrollment":"`+dev.HeldEnrollment+`"}`, nil)
	waitFor(t, 30*time.Second, "the wiped device enrolled", func() bool {
		s := wiped.lastStatus()
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged
	})
	cancel()
	<-done
	st := wiped.state(t)
	e.keep(st.Token, st.SecretID)
	var after wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/sensor-w", "", &after)
	if after.DeviceKey != again.HeldKey || after.HeldEnrollment != "" {
		t.Fatalf("after the approval the device holds key %s (the held request showed %s), held %q", after.DeviceKey, again.HeldKey, after.HeldEnrollment)
	}
}
