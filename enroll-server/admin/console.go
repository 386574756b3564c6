package admin

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Person is who holds an admin token, as Vault tells it.
type Person struct {
	Name string
	// TTL is what is left of the token; zero for a token that never
	// expires (a root token).
	TTL time.Duration
}

// SignIn logs a person in to Vault through the auth method mounted at
// mount (userpass, ldap) and returns their token, which the caller keeps.
// Refused logins count against the source address like refused tokens.
func (s *Service) SignIn(ctx context.Context, mount, user, password string) (string, Person, error) {
	if user == "" || password == "" || len(user) > 256 || len(password) > 1024 {
		return "", Person{}, wire.Errorf(wire.CodeInvalidRequest, "a username and a password are required")
	}
	took, giveBack := s.failedChecks.Take(sourceOf(ctx), time.Now())
	if !took {
		return "", Person{}, &wire.Error{Code: wire.CodeRateLimited, Message: "too many refused sign-ins; retry shortly", RetryAfterSeconds: 1}
	}
	login, err := s.vault.PasswordLogin(ctx, mount, user, password)
	if errors.Is(err, vault.ErrBadLogin) {
		return "", Person{}, wire.Errorf(wire.CodeUnauthenticated, "Vault refused this username or password")
	}
	giveBack()
	if err != nil {
		s.log.Warn("sign in through vault", "err", err, "mount", mount)
		return "", Person{}, &wire.Error{Code: wire.CodeUnavailable, Message: "vault could not be asked", RetryAfterSeconds: 2}
	}
	p, err := s.Identify(ctx, login.Token)
	return login.Token, p, err
}

// Identify says whose token this is and how long it lives, or refuses a
// token Vault does not know.
func (s *Service) Identify(ctx context.Context, token string) (Person, error) {
	if token == "" {
		return Person{}, wire.Errorf(wire.CodeUnauthenticated, "a Vault token is required")
	}
	took, giveBack := s.failedChecks.Take(sourceOf(ctx), time.Now())
	if !took {
		return Person{}, &wire.Error{Code: wire.CodeRateLimited, Message: "too many refused tokens; retry shortly", RetryAfterSeconds: 1}
	}
	ti, err := s.vault.LookupToken(ctx, token)
	if errors.Is(err, vault.ErrInvalidToken) {
		return Person{}, wire.Errorf(wire.CodeInvalidToken, "Vault does not accept this token (expired, revoked or mistyped)")
	}
	giveBack()
	if err != nil {
		return Person{}, &wire.Error{Code: wire.CodeUnavailable, Message: "vault could not check the token", RetryAfterSeconds: 2}
	}
	name := ti.Meta["username"]
	if name == "" {
		name = ti.DisplayName
	}
	return Person{Name: name, TTL: ti.TTL}, nil
}

// SignOut revokes a token the server obtained at sign-in.
func (s *Service) SignOut(ctx context.Context, token string) error {
	return s.vault.RevokeSelf(ctx, token)
}

// May reports whether token may change area of fleet (of every fleet when
// fleet is empty). It decides only what a page offers: every action is
// authorised again when it is made.
func (s *Service) May(ctx context.Context, token, area, fleet string) bool {
	path := vault.AdminActionPrefix + area
	if fleet != "" {
		path += "/" + fleet
	}
	caps, err := s.vault.Capabilities(ctx, token, path)
	return err == nil && (slices.Contains(caps, "root") || slices.Contains(caps, canUpdate))
}

// AcknowledgeAlert records that the token's holder took alert seq in hand.
func (s *Service) AcknowledgeAlert(ctx context.Context, token string, seq uint64) (inventory.Alert, error) {
	actor, err := s.authorize(ctx, token, AreaAudit, "", canUpdate)
	if err != nil {
		return inventory.Alert{}, err
	}
	a, err := s.store.AcknowledgeAlert(ctx, seq, actor, timeNow())
	if errors.Is(err, inventory.ErrNotFound) {
		return a, wire.Errorf(wire.CodeNotFound, "no alert %d", seq)
	}
	if err != nil {
		return a, err
	}
	s.audit(ctx, actor, "admin:acknowledge-alert", a.Fleet, "alert "+strconv.FormatUint(seq, 10)+" ("+a.Kind+") of device "+a.DeviceID)
	return a, nil
}

// Overview is the fleet at a glance.
type Overview struct {
	Devices          int
	ByState          []Count
	EnrolledLastHour int
	OpenAlerts       int
	Fleets           []wire.Generations
}

// Count is how many devices are in one state.
type Count struct {
	State string
	N     int
}

// Overview counts devices by state, enrollments over the last hour and
// open alerts, and lists each fleet's generations with their devices. The
// store counts (it never hands over the whole inventory); Vault tells the
// generations.
func (s *Service) Overview(ctx context.Context, token string, fleets []string) (Overview, error) {
	if _, err := s.authorize(ctx, token, AreaDevices, "", canRead); err != nil {
		return Overview{}, err
	}
	var o Overview
	counts, recent, err := s.store.CountDevices(ctx, timeNow().Add(-time.Hour))
	if err != nil {
		return o, err
	}
	o.EnrolledLastHour = recent
	by := map[string]int{}
	for _, c := range counts {
		by[c.State] += c.N
		o.Devices += c.N
	}
	for st, n := range by {
		o.ByState = append(o.ByState, Count{st, n})
	}
	sort.Slice(o.ByState, func(i, j int) bool { return o.ByState[i].State < o.ByState[j].State })
	if alerts, err := s.AlertList(ctx, token); err == nil {
		for _, a := range alerts {
			if a.AckedBy == "" {
				o.OpenAlerts++
			}
		}
	}
	for _, f := range fleets {
		g, err := s.vault.Generations(ctx, f)
		if err != nil {
			return o, err
		}
		out := wire.Generations{Fleet: f}
		for _, x := range g.List {
			gen := wire.Generation{N: x.N, State: x.State, Current: x.N == g.Current, CreatedAt: x.CreatedAt}
			for _, c := range counts {
				if c.Fleet == f && c.Generation == x.N {
					gen.Devices += c.N
					if c.State != inventory.DeviceRevoked {
						gen.Dependents += c.Keyless // as dependents counts them
					}
				}
			}
			out.Generations = append(out.Generations, gen)
		}
		sort.Slice(out.Generations, func(i, j int) bool { return out.Generations[i].N < out.Generations[j].N })
		o.Fleets = append(o.Fleets, out)
	}
	return o, nil
}
