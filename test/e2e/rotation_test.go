package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

func (e *env) adminJSON(method, path, body string, out any) {
	e.t.Helper()
	status, resp := e.adminCall(method, path, e.vault.RootToken, body)
	if status != 200 {
		e.t.Fatalf("%s %s: %d %s", method, path, status, resp)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(resp), out); err != nil {
			e.t.Fatal(err)
		}
	}
}

// A full rotation: generation 1 devices enrolled; rotate; a new device
// enrolls with generation 2 while a generation 1 device still can during
// the grace period; retire generation 1: its secret IDs are gone from Vault
// and a generation 1 device is refused clearly, while every device enrolled
// earlier keeps renewing and logging in.
func TestFullRotation(t *testing.T) {
	e := newEnv(t)
	gen1 := e.bundle
	a := e.enroll(e.newDevice("gen1-a", nil))

	var rot wire.Rotated
	e.adminJSON("POST", "/v1/admin/fleets/acme/rotate", "", &rot)
	e.keep(rot.SecretID)
	if rot.Generation != 2 || rot.SecretID == "" {
		t.Fatalf("rotate = %+v", rot)
	}
	gen2 := gen1
	gen2.RoleID, gen2.SecretID, gen2.Generation = rot.RoleID, rot.SecretID, rot.Generation
	useGen := func(g bundle.Bundle) func(*bundle.Bundle) { return func(b *bundle.Bundle) { *b = g } }

	b := e.enroll(e.newDevice("gen2-b", useGen(gen2)))
	c := e.enroll(e.newDevice("gen1-c", useGen(gen1))) // grace period

	var gens wire.Generations
	e.adminJSON("GET", "/v1/admin/fleets/acme/generations", "", &gens)
	if len(gens.Generations) != 2 || gens.Generations[0].Devices != 2 || gens.Generations[1].Devices != 1 ||
		!gens.Generations[1].Current || gens.Generations[0].Attempts < 2 {
		t.Fatalf("generations = %+v", gens.Generations)
	}

	var ended wire.GenerationEnded
	e.adminJSON("POST", "/v1/admin/fleets/acme/generations/1/retire", "", &ended)
	if ended.DestroyedSecretIDs < 1 {
		t.Fatalf("retire destroyed %d secret IDs", ended.DestroyedSecretIDs)
	}
	// Every generation 1 secret ID is gone from Vault.
	role := "auth/edge-enroll/role/" + vault.EnrollRole(fleet)
	sec, err := e.root.Logical().List(role + "/secret-id")
	if err != nil {
		t.Fatal(err)
	}
	var left []any
	if sec != nil {
		left = sec.Data["keys"].([]any)
	}
	for _, acc := range left {
		look, err := e.root.Logical().Write(role+"/secret-id-accessor/lookup", map[string]any{"secret_id_accessor": acc})
		if err != nil {
			t.Fatal(err)
		}
		if g := look.Data["metadata"].(map[string]any)["generation"]; g == "1" {
			t.Fatalf("a generation 1 secret ID is still in Vault: %s", acc)
		}
	}
	if len(left) != 1 {
		t.Fatalf("%d enrollment secret IDs left, want the 1 of generation 2", len(left))
	}

	// A generation 1 device is refused with a clear, permanent error.
	late := e.newDevice("gen1-late", useGen(gen1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = late.machine.Run(ctx, true)
	if !errors.Is(err, lifecycle.ErrRejected) || !strings.Contains(err.Error(), "bootstrap credential") {
		t.Fatalf("a retired generation's device: %v", err)
	}

	// Earlier devices keep working: renew their tokens and log in again.
	for _, st := range []lifecycle.State{a, b, c} {
		if _, err := e.clientFor(st.Token).Auth().Token().RenewSelf(0); err != nil {
			t.Errorf("device %s cannot renew: %v", st.DeviceID, err)
		}
		login, err := e.clientFor("").Logical().Write("auth/"+vault.DeviceMount(fleet)+"/login",
			map[string]any{"role_id": st.RoleID, "secret_id": st.SecretID})
		if err != nil {
			t.Errorf("device %s cannot log in: %v", st.DeviceID, err)
		} else {
			e.keep(login.Auth.ClientToken)
		}
	}
}
