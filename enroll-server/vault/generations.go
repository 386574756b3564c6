package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// Generation states.
const (
	GenerationLive    = "live"
	GenerationRetired = "retired"
	GenerationRevoked = "revoked"
)

// Generation is one version of a fleet's shared enrollment credential.
type Generation struct {
	N         int       `json:"n"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
}

// Generations is a fleet's record of its enrollment credential generations,
// kept in Vault's KV store next to the fleet's secrets.
type Generations struct {
	Current int          `json:"current"`
	List    []Generation `json:"generations"`
}

// Live reports whether generation n may still enroll devices.
func (g Generations) Live(n int) bool {
	for _, x := range g.List {
		if x.N == n {
			return x.State == GenerationLive
		}
	}
	return false
}

// Known reports whether the record has a generation n at all.
func (g Generations) Known(n int) bool {
	for _, x := range g.List {
		if x.N == n {
			return true
		}
	}
	return false
}

func readGenerations(ctx context.Context, c *api.Client, l Layout, fleet string) (Generations, error) {
	sec, err := c.Logical().ReadWithContext(ctx, l.generationsPath(fleet))
	if err != nil {
		return Generations{}, fmt.Errorf("read generations of fleet %s: %w", fleet, err)
	}
	if sec == nil || sec.Data == nil || sec.Data["data"] == nil {
		return Generations{}, ErrNotFound
	}
	raw, err := json.Marshal(sec.Data["data"])
	if err != nil {
		return Generations{}, err
	}
	var g Generations
	if err := json.Unmarshal(raw, &g); err != nil {
		return Generations{}, fmt.Errorf("generations of fleet %s: %w", fleet, err)
	}
	return g, nil
}

func writeGenerations(ctx context.Context, c *api.Client, l Layout, fleet string, g Generations) error {
	raw, err := json.Marshal(g)
	if err != nil {
		return err
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return err
	}
	if _, err := c.Logical().WriteWithContext(ctx, l.generationsPath(fleet), map[string]any{"data": data}); err != nil {
		return fmt.Errorf("write generations of fleet %s: %w", fleet, err)
	}
	return nil
}

// Generations reads a fleet's generation record. A fleet never set up in
// Vault is an unavailable service (FleetNotSetUp): devices retry, and an
// admin is told what to run.
func (s *Server) Generations(ctx context.Context, fleet string) (Generations, error) {
	g, err := readGenerations(ctx, s.c, s.layout, fleet)
	if errors.Is(err, ErrNotFound) {
		return g, FleetNotSetUp(fleet)
	}
	return g, err
}

// FleetNotSetUp is the error for a configured fleet whose Vault objects
// were never made.
// It is both that *wire.Error and ErrNotFound.
func FleetNotSetUp(fleet string) error {
	return notSetUp{wire.Errorf(wire.CodeUnavailable, "fleet %s is not set up in Vault: an administrator runs `enrollctl setup -fleet %s`", fleet, fleet)}
}

type notSetUp struct{ w *wire.Error }

func (e notSetUp) Error() string   { return e.w.Error() }
func (e notSetUp) Unwrap() []error { return []error{e.w, ErrNotFound} }
