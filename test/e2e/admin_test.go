package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/enroll-server/enrollctl"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// The admin API decides by Vault policy: an admin or operator token may
// list devices, a device's token and no token may not.
func TestAdminDevicesIsAuthorisedByVault(t *testing.T) {
	e := newEnv(t)
	st := e.enroll(e.newDevice("sensor-a", nil))
	tokenWith := func(policy string) string {
		sec, err := e.root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{policy}, NoDefaultPolicy: true})
		if err != nil {
			t.Fatal(err)
		}
		e.keep(sec.Auth.ClientToken)
		return sec.Auth.ClientToken
	}
	tests := []struct {
		name   string
		token  string
		status int
		code   string
	}{
		{"admin policy", tokenWith(vault.AdminPolicy), http.StatusOK, ""},
		{"operator policy", tokenWith(vault.OperatorPolicy), http.StatusOK, ""},
		{"a device's token", st.Token, http.StatusForbidden, "forbidden"},
		{"a token with only the default policy", tokenWith("default"), http.StatusForbidden, "forbidden"},
		{"an unknown token", "hvs.nosuchtoken", http.StatusUnauthorized, "invalid_token"},
		{"no token", "", http.StatusUnauthorized, "unauthenticated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.get(wire.PathAdminDevices+"?fleet=acme", tt.token)
			if status != tt.status {
				t.Fatalf("status %d (%s), want %d", status, body, tt.status)
			}
			if tt.code != "" {
				if got := errorCode(t, body); got != tt.code {
					t.Fatalf("code %q, want %q", got, tt.code)
				}
				return
			}
			var list wire.DeviceList
			if err := json.Unmarshal([]byte(body), &list); err != nil {
				t.Fatal(err)
			}
			if len(list.Devices) != 1 || list.Devices[0].ID != "sensor-a" || list.Devices[0].State != "enrolled" {
				t.Fatalf("devices = %+v", list.Devices)
			}
		})
	}
}

// Admin rights are per fleet: an administrator of another fleet can
// neither read nor change this one, nor read what spans every fleet (the
// audit log, alerts, an unfiltered device list); the fleet's own
// administrator and operator can, each within their rights.
func TestAdminRightsArePerFleet(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("sensor-a", nil))
	admin, err := vault.NewAdmin(vault.Options{Address: e.vault.Addr, Token: e.vault.RootToken}, e.layout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetupFleet(context.Background(), "beta"); err != nil {
		t.Fatal(err)
	}
	ours, theirs := e.tokenWith(vault.FleetAdminPolicy(fleet)), e.tokenWith(vault.FleetAdminPolicy("beta"))
	operator := e.tokenWith(vault.FleetOperatorPolicy(fleet))
	calls := []struct {
		name, method, path, body string
		token                    string
		status                   int
	}{
		{"our admin shows our device", "GET", "/v1/admin/devices/acme/sensor-a", "", ours, 200},
		{"our admin lists our fleet", "GET", "/v1/admin/devices?fleet=acme", "", ours, 200},
		{"our admin reads our generations", "GET", "/v1/admin/fleets/acme/generations", "", ours, 200},
		{"our admin revokes our device", "POST", "/v1/admin/devices/acme/sensor-a/revoke", `{"reason":"test"}`, ours, 200},
		{"our admin lists every fleet", "GET", "/v1/admin/devices", "", ours, 403},
		{"our admin reads the audit log", "GET", "/v1/admin/audit/verify", "", ours, 403},
		{"our admin reads all alerts", "GET", "/v1/admin/alerts", "", ours, 403},
		{"our operator shows our device", "GET", "/v1/admin/devices/acme/sensor-a", "", operator, 200},
		{"our operator readmits", "POST", "/v1/admin/devices/acme/sensor-a/readmit", "", operator, 403},
		{"their admin shows our device", "GET", "/v1/admin/devices/acme/sensor-a", "", theirs, 403},
		{"their admin lists our fleet", "GET", "/v1/admin/devices?fleet=acme", "", theirs, 403},
		{"their admin readmits our device", "POST", "/v1/admin/devices/acme/sensor-a/readmit", "", theirs, 403},
		{"their admin rotates our fleet", "POST", "/v1/admin/fleets/acme/rotate", "", theirs, 403},
		{"their admin batch-provisions our fleet", "POST", "/v1/admin/fleets/acme/batch", `{"device_ids":["x-1"]}`, theirs, 403},
		{"their admin approves in our fleet", "POST", "/v1/admin/devices/acme/sensor-b/approve", "", theirs, 403},
	}
	for _, c := range calls {
		status, body := e.adminCall(c.method, c.path, c.token, c.body)
		if status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
		}
	}
}

// enrollctl never sends the administrator's own token to the server: it
// sends a child of it that lives five minutes and holds only the admin
// policies; the audit log still names the administrator's entity. It does
// not follow a redirect with a token either.
func TestEnrollctlSendsAShortLivedChildToken(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("sensor-a", nil))
	// An administrator logged in through userpass, with an entity.
	if err := e.root.Sys().EnableAuthWithOptions("userpass", &api.EnableAuthOptions{Type: "userpass"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.root.Logical().Write("auth/userpass/users/alice", map[string]any{
		"password": "correct horse", "token_policies": vault.FleetAdminPolicy(fleet) + ",default", "token_ttl": "8h"}); err != nil {
		t.Fatal(err)
	}
	login, err := e.clientFor("").Logical().Write("auth/userpass/login/alice", map[string]any{"password": "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	parent := login.Auth.ClientToken
	e.keep(parent)

	var mu sync.Mutex
	var sent []string
	target, _ := url.Parse(e.serverURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: tlsTo(t, e.caPEM)}
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, r.Header.Get(wire.HeaderVaultToken))
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	defer rec.Close()
	ctl := func(serverURL string, args ...string) (int, string) {
		var out, errOut bytes.Buffer
		env := map[string]string{"VAULT_ADDR": e.vault.Addr, "VAULT_TOKEN": parent, "ENROLL_SERVER_URL": serverURL}
		code := enrollctl.Run(context.Background(), args, enrollctl.Env{Getenv: func(k string) string { return env[k] }, Stdout: &out, Stderr: &errOut})
		return code, out.String() + errOut.String()
	}
	if code, out := ctl(rec.URL, "revoke", "-fleet", "acme", "-device", "sensor-a", "-reason", "lost in the field"); code != 0 {
		t.Fatalf("enrollctl revoke: %d %s", code, out)
	}
	if len(sent) != 1 || sent[0] == "" || sent[0] == parent {
		t.Fatalf("enrollctl sent %d requests; the administrator's own token among them: %v", len(sent), len(sent) == 1 && sent[0] == parent)
	}
	e.keep(sent[0])
	child, err := e.root.Auth().Token().Lookup(sent[0])
	if err != nil {
		t.Fatal(err)
	}
	ttl, _ := child.TokenTTL()
	policies, _ := child.TokenPolicies()
	if ttl > 5*time.Minute || len(policies) != 1 || policies[0] != vault.FleetAdminPolicy(fleet) {
		t.Fatalf("the token sent lives %v with policies %v; want at most 5m and only %s", ttl, policies, vault.FleetAdminPolicy(fleet))
	}
	entity := login.Auth.EntityID
	_, export := e.get("/v1/admin/audit", e.vault.RootToken)
	if entity == "" || !strings.Contains(export, "entity "+entity) || !strings.Contains(export, `"action":"admin:revoke"`) {
		t.Fatalf("the audit log does not name alice's entity %q:\n%s", entity, export)
	}

	redirect := httptest.NewServer(http.RedirectHandler(rec.URL+"/v1/admin/devices?fleet=acme", http.StatusTemporaryRedirect))
	defer redirect.Close()
	if code, out := ctl(redirect.URL, "devices", "-fleet", "acme"); code == 0 || !strings.Contains(out, "redirect") {
		t.Fatalf("enrollctl followed a redirect: %d %s", code, out)
	}
	if len(sent) != 1 {
		t.Fatal("the redirect reached the server with a token")
	}
}
