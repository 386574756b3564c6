package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/hashicorp/vault/api"

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
		{"an unknown token", "hvs.nosuchtoken", http.StatusUnauthorized, "unauthenticated"},
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
