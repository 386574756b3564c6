package vault

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

func (s *Server) enrollRolePath(fleet string) string {
	return "auth/" + s.layout.EnrollMount + "/role/" + EnrollRole(fleet)
}

// Rotate starts a new generation of the fleet's enrollment credential and
// mints its first secret ID. Earlier generations stay live (their grace
// period) until they are ended.
func (s *Server) Rotate(ctx context.Context, fleet string) (EnrollmentCredential, error) {
	g, err := readGenerations(ctx, s.c, s.layout, fleet)
	if err != nil {
		return EnrollmentCredential{}, err
	}
	next := 0
	for _, x := range g.List {
		next = max(next, x.N)
	}
	next++
	g.List = append(g.List, Generation{N: next, State: GenerationLive, CreatedAt: time.Now().UTC()})
	g.Current = next
	if err := writeGenerations(ctx, s.c, s.layout, fleet, g); err != nil {
		return EnrollmentCredential{}, err
	}
	roleID, secretID, acc, err := mintSecretID(ctx, s.c, s.enrollRolePath(fleet), map[string]string{
		"generation": strconv.Itoa(next), "fleet": fleet,
	})
	if err != nil {
		return EnrollmentCredential{}, err
	}
	return EnrollmentCredential{RoleID: roleID, SecretID: secretID, Accessor: acc, Generation: next}, nil
}

// ErrCurrentGeneration refuses to end the generation new images carry.
var ErrCurrentGeneration = errors.New("the current generation cannot be ended; rotate first")

// EndGeneration retires or revokes generation n: it destroys, by accessor,
// every enrollment secret ID of that generation, then records the new state.
// It returns how many secret IDs it destroyed.
func (s *Server) EndGeneration(ctx context.Context, fleet string, n int, state string) (int, error) {
	g, err := readGenerations(ctx, s.c, s.layout, fleet)
	if err != nil {
		return 0, err
	}
	idx := -1
	for i, x := range g.List {
		if x.N == n {
			idx = i
		}
	}
	if idx < 0 {
		return 0, fmt.Errorf("generation %d: %w", n, ErrNotFound)
	}
	if n == g.Current {
		return 0, ErrCurrentGeneration
	}
	destroyed, err := s.destroyGeneration(ctx, fleet, n)
	if err != nil {
		return destroyed, err
	}
	g.List[idx].State = state
	return destroyed, writeGenerations(ctx, s.c, s.layout, fleet, g)
}

func (s *Server) destroyGeneration(ctx context.Context, fleet string, n int) (int, error) {
	rolePath := s.enrollRolePath(fleet)
	accs, err := listKeys(ctx, s.c, rolePath+"/secret-id")
	if err != nil {
		return 0, err
	}
	destroyed := 0
	for _, acc := range accs {
		sec, err := s.c.Logical().WriteWithContext(ctx, rolePath+"/secret-id-accessor/lookup", map[string]any{"secret_id_accessor": acc})
		if err != nil || sec == nil {
			continue // destroyed meanwhile
		}
		meta, _ := sec.Data["metadata"].(map[string]any)
		if str(meta["generation"]) != strconv.Itoa(n) {
			continue
		}
		if err := s.destroySecretIDAccessor(ctx, rolePath, acc); err != nil {
			return destroyed, err
		}
		destroyed++
	}
	return destroyed, nil
}

// EnrollmentSecretIDs counts the live enrollment secret IDs per generation.
func (s *Server) EnrollmentSecretIDs(ctx context.Context, fleet string) (map[int]int, error) {
	rolePath := s.enrollRolePath(fleet)
	accs, err := listKeys(ctx, s.c, rolePath+"/secret-id")
	if err != nil {
		return nil, err
	}
	out := map[int]int{}
	for _, acc := range accs {
		sec, err := s.c.Logical().WriteWithContext(ctx, rolePath+"/secret-id-accessor/lookup", map[string]any{"secret_id_accessor": acc})
		if err != nil || sec == nil {
			continue
		}
		meta, _ := sec.Data["metadata"].(map[string]any)
		if n, err := strconv.Atoi(str(meta["generation"])); err == nil {
			out[n]++
		}
	}
	return out, nil
}
