package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/vault"
)

// A fleet listed in the server's configuration but never set up in Vault
// keeps the server not ready, says so (naming the fleet in the log, not on
// the public endpoint), and tells an admin what to run; once it is set up,
// the server turns ready by itself.
func TestNotReadyWhileAFleetIsNotSetUp(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.Fleets = append(cfg.Fleets, config.FleetDefaults(config.Fleet{Name: "ghost"}))
	e.stop()
	e.launchServer(cfg)

	waitFor(t, 10*time.Second, "the server logs the fleet missing in Vault", func() bool {
		for _, l := range e.logs.lines("fleets not set up in vault: the server is not ready until an administrator runs `enrollctl setup -fleet NAME` for each") {
			if l["fleets"] == "ghost" {
				return true
			}
		}
		return false
	})
	status, body := e.get("/readyz", "")
	if status != 503 || !strings.Contains(body, "not set up in Vault") || strings.Contains(body, "ghost") {
		t.Fatalf("readyz with a fleet missing in Vault: %d %s", status, body)
	}
	status, body = e.adminCall("GET", "/v1/admin/fleets/ghost/generations", e.vault.RootToken, "")
	if status != 503 || !strings.Contains(body, "enrollctl setup -fleet ghost") {
		t.Fatalf("generations of a fleet missing in Vault: %d %s", status, body)
	}
	// The fleet that is set up still enrolls its devices meanwhile.
	e.enroll(e.newDevice("sensor-a", nil))

	admin, err := vault.NewAdmin(vault.Options{Address: e.vault.Addr, Token: e.vault.RootToken}, e.layout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetupFleet(context.Background(), "ghost"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "ready once the fleet is set up", func() bool {
		status, _ := e.get("/readyz", "")
		return status == 200
	})
	if len(e.logs.lines("every fleet is set up in vault")) == 0 {
		t.Fatal("the server did not say the fleets are all set up now")
	}
}
