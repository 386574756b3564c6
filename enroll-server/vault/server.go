package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/pkg/backoff"
)

// Credentials are the server's own AppRole credentials.
type Credentials struct {
	RoleID   string `json:"role_id"`
	SecretID string `json:"secret_id"`
}

// LoadCredentials reads a credentials file written by the admin CLI. The
// file must not be readable by group or others.
func LoadCredentials(path string) (Credentials, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("vault credentials: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Credentials{}, fmt.Errorf("vault credentials %s: mode %v is readable by others, want 0600", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("vault credentials: %w", err)
	}
	var c Credentials
	if err := json.Unmarshal(data, &c); err != nil {
		return Credentials{}, fmt.Errorf("vault credentials %s: %w", path, err)
	}
	if c.RoleID == "" || c.SecretID == "" {
		return Credentials{}, fmt.Errorf("vault credentials %s: role_id and secret_id are required", path)
	}
	return c, nil
}

// Server is the enrollment server's Vault client. It logs in with the
// server's AppRole and keeps its token alive; every method uses that token.
type Server struct {
	c      *api.Client
	layout Layout
	creds  Credentials
	log    *slog.Logger

	mu       sync.Mutex
	loggedIn chan struct{} // closed after the first successful login
}

// NewServer builds the server's client. Call Run to log in and keep the
// token alive.
func NewServer(o Options, l Layout, creds Credentials, log *slog.Logger) (*Server, error) {
	if o.Switched == nil {
		o.Switched = func(from, to string) {
			log.Warn("vault node cannot serve; requests go to another address", "from", from, "to", to)
		}
	}
	c, err := newAPIClient(o)
	if err != nil {
		return nil, err
	}
	return &Server{c: c, layout: l, creds: creds, log: log, loggedIn: make(chan struct{})}, nil
}

// Layout returns the Vault layout the server works against.
func (s *Server) Layout() Layout { return s.layout }

func (s *Server) login(ctx context.Context) (*api.Secret, error) {
	sec, err := s.c.Logical().WriteWithContext(ctx, "auth/"+s.layout.EnrollMount+"/login",
		map[string]any{"role_id": s.creds.RoleID, "secret_id": s.creds.SecretID})
	if err != nil {
		return nil, fmt.Errorf("server login: %w", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, errors.New("server login: no token in response")
	}
	s.c.SetToken(sec.Auth.ClientToken)
	s.mu.Lock()
	select {
	case <-s.loggedIn:
	default:
		close(s.loggedIn)
	}
	s.mu.Unlock()
	s.log.Info("logged in to vault", "accessor", sec.Auth.Accessor, "ttl", (time.Duration(sec.Auth.LeaseDuration) * time.Second).String())
	return sec, nil
}

// Run logs in and keeps the server's token alive until ctx ends: it renews
// the token while Vault allows and logs in again when renewal stops, with a
// capped backoff between failed attempts.
func (s *Server) Run(ctx context.Context) error {
	retry := backoff.New(time.Second, time.Minute, nil)
	for {
		sec, err := s.login(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			delay := retry.Next(0)
			s.log.Warn("vault login failed; will retry", "err", err, "retry_in", delay.Round(time.Millisecond).String())
			if !backoff.Sleep(ctx, delay) {
				return nil
			}
			continue
		}
		retry.Reset()
		if err := s.watch(ctx, sec); err != nil {
			s.log.Warn("vault token renewal ended; logging in again", "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func (s *Server) watch(ctx context.Context, sec *api.Secret) error {
	w, err := s.c.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: sec})
	if err != nil {
		return err
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.DoneCh():
			return err
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				s.log.Debug("vault token renewed", "ttl", (time.Duration(r.Secret.Auth.LeaseDuration) * time.Second).String())
			}
		}
	}
}

// Ready reports whether Vault is reachable, initialised and unsealed, and
// the server holds a token.
func (s *Server) Ready(ctx context.Context) error {
	select {
	case <-s.loggedIn:
	default:
		return errors.New("not logged in to vault yet")
	}
	return s.Health(ctx)
}

// Health reports whether Vault answers, initialised and unsealed.
func (s *Server) Health(ctx context.Context) error {
	h, err := s.c.Sys().HealthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("vault health: %w", err)
	}
	if !h.Initialized || h.Sealed {
		return fmt.Errorf("vault is not ready (initialized=%v sealed=%v)", h.Initialized, h.Sealed)
	}
	return nil
}

// LoginOnce logs in with the server's credentials and returns the token's
// policies, for a check: nothing keeps the token alive.
func (s *Server) LoginOnce(ctx context.Context) ([]string, error) {
	sec, err := s.login(ctx)
	if err != nil {
		return nil, err
	}
	return sec.Auth.Policies, nil
}

// LoggedIn is closed once the server has logged in to Vault.
func (s *Server) LoggedIn() <-chan struct{} { return s.loggedIn }

// LookupToken looks up another token with the server's token.
func (s *Server) LookupToken(ctx context.Context, token string) (TokenInfo, error) {
	return lookupToken(ctx, s.c, token)
}

// RevokeEnrollmentToken makes an enrollment token revoke itself (its
// policy allows nothing else): the server needs no right to revoke other
// tokens. An already invalid token is not an error.
func (s *Server) RevokeEnrollmentToken(ctx context.Context, token string) error {
	c, err := s.c.Clone()
	if err != nil {
		return err
	}
	c.SetToken(token)
	_, err = c.Logical().WriteWithContext(ctx, "auth/token/revoke-self", nil)
	if err != nil && (statusOf(err) == http.StatusForbidden || statusOf(err) == http.StatusBadRequest) {
		return nil // revoked or used up meanwhile
	}
	if err != nil {
		// One token sent in two requests at once is revoked by both, and
		// Vault may answer one of them 500: a token now gone is what was
		// asked for.
		if _, lerr := lookupToken(ctx, s.c, token); errors.Is(lerr, ErrInvalidToken) {
			return nil
		}
		return fmt.Errorf("revoke the enrollment token: %w", err)
	}
	return nil
}

// Capabilities returns what token may do on path, asked with the server's
// own token (sys/capabilities). An unknown token may do nothing.
func (s *Server) Capabilities(ctx context.Context, token, path string) ([]string, error) {
	sec, err := s.c.Logical().WriteWithContext(ctx, "sys/capabilities", map[string]any{"token": token, "paths": []string{path}})
	if err != nil {
		if st := statusOf(err); st == http.StatusBadRequest || st == http.StatusForbidden {
			if strings.Contains(err.Error(), "invalid token") || strings.Contains(err.Error(), "bad token") {
				return []string{"deny"}, nil
			}
		}
		return nil, fmt.Errorf("capabilities: %w", err)
	}
	if sec == nil || sec.Data == nil {
		return []string{"deny"}, nil
	}
	return strs(sec.Data[path]), nil
}

// Brief is a Vault error on one line: what Vault answered, without the
// request's whole description.
func Brief(err error) string {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("Vault answered %d: %s", re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return err.Error()
}
