package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// Admin performs the fleet administrator's Vault operations with the
// administrator's own token.
type Admin struct {
	c      *api.Client
	layout Layout
	now    func() time.Time
}

// NewAdmin connects to Vault with an administrator's token.
func NewAdmin(o Options, l Layout) (*Admin, error) {
	if o.Token == "" {
		return nil, errors.New("an administrator's vault token is required (VAULT_TOKEN)")
	}
	c, err := newAPIClient(o)
	if err != nil {
		return nil, err
	}
	return &Admin{c: c, layout: l, now: time.Now}, nil
}

// Change is one object setup looked at, and what it did.
type Change struct {
	Object string
	Action string // created, updated or unchanged
}

// Report lists what setup did.
type Report struct{ Changes []Change }

// Changed reports whether anything was created or updated.
func (r Report) Changed() bool {
	return slices.ContainsFunc(r.Changes, func(c Change) bool { return c.Action != "unchanged" })
}

func (r *Report) add(object, action string) { r.Changes = append(r.Changes, Change{object, action}) }

// SetupFleet creates, idempotently, everything a fleet needs: the AppRole
// mounts, the KV mount, the policies, the enrollment role, the server's role
// and the fleet's first credential generation. Running it again changes
// nothing and says so.
func (a *Admin) SetupFleet(ctx context.Context, fleet string) (Report, error) {
	var rep Report
	if err := wire.ValidateFleet(fleet); err != nil {
		return rep, err
	}
	l := a.layout
	steps := []func() error{
		func() error { return a.ensureAuthMount(ctx, &rep, l.EnrollMount, "enrollment roles") },
		func() error { return a.ensureAuthMount(ctx, &rep, DeviceMount(fleet), "device roles of fleet "+fleet) },
		func() error { return a.ensureKVMount(ctx, &rep) },
		func() error { return a.ensurePolicy(ctx, &rep, BootstrapPolicy, bootstrapPolicyHCL) },
		func() error {
			acc, err := a.authMountAccessor(ctx, DeviceMount(fleet))
			if err != nil {
				return err
			}
			return a.ensurePolicy(ctx, &rep, DevicePolicy(fleet), devicePolicyHCL(l, fleet, acc))
		},
		func() error {
			fleets, err := a.Fleets(ctx)
			if err != nil {
				return err
			}
			mounts := make(map[string]string, len(fleets))
			for _, f := range fleets {
				if mounts[f], err = a.authMountAccessor(ctx, DeviceMount(f)); err != nil {
					return err
				}
			}
			return a.ensurePolicy(ctx, &rep, ServerPolicy, serverPolicyHCL(l, mounts))
		},
		func() error { return a.ensurePolicy(ctx, &rep, AdminPolicy, adminPolicyHCL) },
		func() error { return a.ensurePolicy(ctx, &rep, OperatorPolicy, operatorPolicyHCL) },
		func() error {
			return a.ensurePolicy(ctx, &rep, FleetAdminPolicy(fleet), fleetAdminPolicyHCL(fleet, `"create", "read", "update", "delete", "list"`))
		},
		func() error {
			return a.ensurePolicy(ctx, &rep, FleetOperatorPolicy(fleet), fleetAdminPolicyHCL(fleet, `"read", "list"`))
		},
		func() error {
			return a.ensureRole(ctx, &rep, l.EnrollMount, EnrollRole(fleet), map[string]any{
				"bind_secret_id":          true,
				"token_policies":          []string{BootstrapPolicy},
				"token_no_default_policy": true,
				"token_type":              "service",
				"token_ttl":               60,
				"token_max_ttl":           120,
				"token_num_uses":          3,
				"secret_id_ttl":           0,
				"secret_id_num_uses":      0,
			})
		},
		func() error {
			return a.ensureRole(ctx, &rep, l.EnrollMount, ServerRole, map[string]any{
				"bind_secret_id":     true,
				"token_policies":     []string{ServerPolicy},
				"token_type":         "service",
				"token_ttl":          3600,
				"token_max_ttl":      86400,
				"secret_id_ttl":      0,
				"secret_id_num_uses": 0,
			})
		},
		func() error { return a.ensureFirstGeneration(ctx, &rep, fleet) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// Fleets lists the fleets set up in Vault, found by their device mounts.
func (a *Admin) Fleets(ctx context.Context) ([]string, error) {
	mounts, err := a.c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("list auth mounts: %w", err)
	}
	var out []string
	for path, m := range mounts {
		name := strings.TrimSuffix(path, "/")
		if m.Type == "approle" && strings.HasPrefix(name, devicePrefix) {
			out = append(out, strings.TrimPrefix(name, devicePrefix))
		}
	}
	slices.Sort(out)
	return out, nil
}

func (a *Admin) ensureAuthMount(ctx context.Context, rep *Report, path, what string) error {
	mounts, err := a.c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list auth mounts: %w", err)
	}
	obj := "auth mount " + path
	if m, ok := mounts[path+"/"]; ok {
		if m.Type != "approle" {
			return fmt.Errorf("%s exists with type %q, want approle", obj, m.Type)
		}
		rep.add(obj, "unchanged")
		return nil
	}
	err = a.c.Sys().EnableAuthWithOptionsWithContext(ctx, path, &api.EnableAuthOptions{
		Type: "approle", Description: "edge-enroll: " + what,
	})
	if err != nil {
		return fmt.Errorf("enable %s: %w", obj, err)
	}
	rep.add(obj, "created")
	return nil
}

func (a *Admin) authMountAccessor(ctx context.Context, path string) (string, error) {
	mounts, err := a.c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return "", fmt.Errorf("list auth mounts: %w", err)
	}
	m, ok := mounts[path+"/"]
	if !ok {
		return "", fmt.Errorf("auth mount %s not found", path)
	}
	return m.Accessor, nil
}

func (a *Admin) ensureKVMount(ctx context.Context, rep *Report) error {
	path := a.layout.KVMount
	obj := "secrets mount " + path
	mounts, err := a.c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	if m, ok := mounts[path+"/"]; ok {
		if m.Type != "kv" || m.Options["version"] != "2" {
			return fmt.Errorf("%s exists as %s version %q, want kv version 2", obj, m.Type, m.Options["version"])
		}
		rep.add(obj, "unchanged")
		return nil
	}
	err = a.c.Sys().MountWithContext(ctx, path, &api.MountInput{
		Type: "kv", Description: "edge-enroll: fleet and device secrets",
		Options: map[string]string{"version": "2"},
	})
	if err != nil {
		return fmt.Errorf("mount %s: %w", obj, err)
	}
	rep.add(obj, "created")
	return nil
}

func (a *Admin) ensurePolicy(ctx context.Context, rep *Report, name, hcl string) error {
	obj := "policy " + name
	cur, err := a.c.Sys().GetPolicyWithContext(ctx, name)
	if err != nil {
		return fmt.Errorf("read %s: %w", obj, err)
	}
	if cur == hcl {
		rep.add(obj, "unchanged")
		return nil
	}
	if err := a.c.Sys().PutPolicyWithContext(ctx, name, hcl); err != nil {
		return fmt.Errorf("write %s: %w", obj, err)
	}
	rep.add(obj, map[bool]string{true: "created", false: "updated"}[cur == ""])
	return nil
}

// ensureRole writes a role when any of the wanted settings differs from what
// Vault holds. Values are compared in their printed form, which is how
// Vault's JSON numbers, lists and booleans read back.
func (a *Admin) ensureRole(ctx context.Context, rep *Report, mount, name string, want map[string]any) error {
	path := "auth/" + mount + "/role/" + name
	obj := "role " + path
	sec, err := a.c.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return fmt.Errorf("read %s: %w", obj, err)
	}
	action := "created"
	if sec != nil && sec.Data != nil {
		same := true
		for k, v := range want {
			if fmt.Sprint(sec.Data[k]) != fmt.Sprint(v) {
				same = false
				break
			}
		}
		if same {
			rep.add(obj, "unchanged")
			return nil
		}
		action = "updated"
	}
	if _, err := a.c.Logical().WriteWithContext(ctx, path, want); err != nil {
		return fmt.Errorf("write %s: %w", obj, err)
	}
	rep.add(obj, action)
	return nil
}

func (a *Admin) ensureFirstGeneration(ctx context.Context, rep *Report, fleet string) error {
	obj := "generations of fleet " + fleet
	_, err := readGenerations(ctx, a.c, a.layout, fleet)
	if err == nil {
		rep.add(obj, "unchanged")
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	g := Generations{Current: 1, List: []Generation{{N: 1, State: GenerationLive, CreatedAt: a.now().UTC()}}}
	if err := writeGenerations(ctx, a.c, a.layout, fleet, g); err != nil {
		return err
	}
	rep.add(obj, "created")
	return nil
}

// EnrollmentCredential is one secret ID of a fleet's enrollment role, for a
// bootstrap bundle.
type EnrollmentCredential struct {
	RoleID     string
	SecretID   string
	Accessor   string
	Generation int
}

// MintEnrollmentCredential creates a secret ID of the fleet's current
// generation. Every bundle made for device images gets its own; they share a
// generation, which is what rotation retires.
func (a *Admin) MintEnrollmentCredential(ctx context.Context, fleet string) (EnrollmentCredential, error) {
	g, err := readGenerations(ctx, a.c, a.layout, fleet)
	if err != nil {
		return EnrollmentCredential{}, fmt.Errorf("fleet %s is not set up: %w", fleet, err)
	}
	path := "auth/" + a.layout.EnrollMount + "/role/" + EnrollRole(fleet)
	roleID, secretID, acc, err := mintSecretID(ctx, a.c, path, map[string]string{
		"generation": fmt.Sprint(g.Current), "fleet": fleet,
	})
	if err != nil {
		return EnrollmentCredential{}, err
	}
	return EnrollmentCredential{RoleID: roleID, SecretID: secretID, Accessor: acc, Generation: g.Current}, nil
}

// MintServerCredentials creates a secret ID for the enrollment server's role.
func (a *Admin) MintServerCredentials(ctx context.Context) (Credentials, error) {
	path := "auth/" + a.layout.EnrollMount + "/role/" + ServerRole
	roleID, secretID, _, err := mintSecretID(ctx, a.c, path, map[string]string{"purpose": "enroll-server"})
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{RoleID: roleID, SecretID: secretID}, nil
}

func mintSecretID(ctx context.Context, c *api.Client, rolePath string, meta map[string]string) (roleID, secretID, accessor string, err error) {
	sec, err := c.Logical().ReadWithContext(ctx, rolePath+"/role-id")
	if err != nil || sec == nil {
		return "", "", "", fmt.Errorf("read role ID of %s: %v", rolePath, err)
	}
	roleID = str(sec.Data["role_id"])
	metaJSON, _ := json.Marshal(meta)
	sec, err = c.Logical().WriteWithContext(ctx, rolePath+"/secret-id", map[string]any{"metadata": string(metaJSON)})
	if err != nil || sec == nil {
		return "", "", "", fmt.Errorf("create secret ID for %s: %v", rolePath, err)
	}
	return roleID, str(sec.Data["secret_id"]), str(sec.Data["secret_id_accessor"]), nil
}
