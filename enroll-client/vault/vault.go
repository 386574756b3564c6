// Package vault is enroll-client's adapter to HashiCorp Vault: the only
// package on the client side that imports github.com/hashicorp/vault/api.
// It logs in with AppRole, validates and unwraps wrapping tokens, and renews
// tokens. It never retries on its own: the caller's backoff is the only
// retry layer.
package vault

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// Errors callers branch on.
var (
	// ErrWrappingInvalid: the wrapping token was already unwrapped, expired
	// or never existed.
	ErrWrappingInvalid = errors.New("wrapping token is not valid (already used, expired or unknown)")
	// ErrCredentialRefused: Vault refused the role ID / secret ID pair
	// (secret ID expired, used up or destroyed, or the role is gone).
	ErrCredentialRefused = errors.New("vault refused the credential")
	// ErrTokenInvalid: the token can no longer be used or renewed.
	ErrTokenInvalid = errors.New("token is no longer valid")
	// ErrUntrustedCertificate: Vault's TLS certificate is not signed by a
	// CA the client trusts for Vault.
	ErrUntrustedCertificate = errors.New("vault's certificate is signed by an unknown authority")
)

// Client talks to Vault on behalf of the device.
type Client struct {
	c  *api.Client
	hc *http.Client // the HTTP client c and its clones share
}

// New builds a client for addr, trusting the PEM CA bundle caPEM (or the
// system roots when it is empty).
func New(addr, caPEM string, timeout time.Duration) (*Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = timeout
	if caPEM != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: []byte(caPEM)}); err != nil {
			return nil, fmt.Errorf("vault TLS: %w", err)
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	// Nothing from the environment (VAULT_TOKEN, VAULT_WRAP_TTL) may change
	// what the device sends.
	c.SetWrappingLookupFunc(func(string, string) string { return "" })
	c.ClearToken()
	return &Client{c: c, hc: cfg.HttpClient}, nil
}

// CloseIdleConnections closes the connections kept open for the next
// request.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// withToken returns a client that sends token; the shared client never holds
// one, so concurrent calls cannot mix credentials.
func (c *Client) withToken(token string) (*api.Client, error) {
	cl, err := c.c.Clone()
	if err != nil {
		return nil, err
	}
	cl.SetWrappingLookupFunc(func(string, string) string { return "" })
	cl.SetToken(token)
	return cl, nil
}

// Auth is the result of a login or renewal.
type Auth struct {
	Token     string
	Accessor  string
	TTL       time.Duration
	Renewable bool
	EntityID  string
	Policies  []string
}

// Login logs in with AppRole at mount.
func (c *Client) Login(ctx context.Context, mount, roleID, secretID string) (Auth, error) {
	sec, err := c.c.Logical().WriteWithContext(ctx, "auth/"+mount+"/login",
		map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		if isClientError(err) {
			return Auth{}, fmt.Errorf("%w: %s", ErrCredentialRefused, vaultMessage(err))
		}
		return Auth{}, failed("vault login", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return Auth{}, errors.New("vault login: no token in the response")
	}
	return authOf(sec.Auth), nil
}

func authOf(a *api.SecretAuth) Auth {
	return Auth{
		Token: a.ClientToken, Accessor: a.Accessor, TTL: time.Duration(a.LeaseDuration) * time.Second,
		Renewable: a.Renewable, EntityID: a.EntityID, Policies: slices.Clone(a.Policies),
	}
}

// RevokeSelf has token revoke itself.
func (c *Client) RevokeSelf(ctx context.Context, token string) error {
	cl, err := c.withToken(token)
	if err != nil {
		return err
	}
	if _, err := cl.Logical().WriteWithContext(ctx, "auth/token/revoke-self", nil); err != nil {
		return failed("vault revoke-self", err)
	}
	return nil
}

// WrapInfo is what a wrapping token lookup tells, without using it.
type WrapInfo struct {
	CreationPath string
	CreationTime time.Time
	CreationTTL  time.Duration
}

// LookupWrapping inspects a wrapping token without consuming it.
func (c *Client) LookupWrapping(ctx context.Context, wrappingToken string) (WrapInfo, error) {
	sec, err := c.c.Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": wrappingToken})
	if err != nil {
		if isClientError(err) {
			return WrapInfo{}, ErrWrappingInvalid
		}
		return WrapInfo{}, failed("look up wrapping token", err)
	}
	if sec == nil || sec.Data == nil {
		return WrapInfo{}, ErrWrappingInvalid
	}
	wi := WrapInfo{CreationPath: fmt.Sprint(sec.Data["creation_path"])}
	if s, ok := sec.Data["creation_time"].(string); ok {
		wi.CreationTime, _ = time.Parse(time.RFC3339Nano, s)
	}
	if n, ok := sec.Data["creation_ttl"].(json.Number); ok {
		if v, err := n.Int64(); err == nil {
			wi.CreationTTL = time.Duration(v) * time.Second
		}
	}
	return wi, nil
}

// SecretID is an unwrapped AppRole secret ID.
type SecretID struct {
	ID       string
	Accessor string
	TTL      time.Duration
}

// UnwrapSecretID unwraps a wrapped AppRole secret ID.
func (c *Client) UnwrapSecretID(ctx context.Context, wrappingToken string) (SecretID, error) {
	cl, err := c.withToken(wrappingToken)
	if err != nil {
		return SecretID{}, err
	}
	sec, err := cl.Logical().UnwrapWithContext(ctx, "")
	if err != nil {
		if isClientError(err) {
			return SecretID{}, ErrWrappingInvalid
		}
		return SecretID{}, failed("unwrap", err)
	}
	if sec == nil || sec.Data == nil {
		return SecretID{}, errors.New("unwrap: empty response")
	}
	id, _ := sec.Data["secret_id"].(string)
	acc, _ := sec.Data["secret_id_accessor"].(string)
	if id == "" || acc == "" {
		return SecretID{}, errors.New("unwrap: the wrapped response is not an AppRole secret ID")
	}
	s := SecretID{ID: id, Accessor: acc}
	if n, ok := sec.Data["secret_id_ttl"].(json.Number); ok {
		if v, err := n.Int64(); err == nil {
			s.TTL = time.Duration(v) * time.Second
		}
	}
	return s, nil
}

// RenewSelf renews token by increment.
func (c *Client) RenewSelf(ctx context.Context, token string, increment time.Duration) (Auth, error) {
	cl, err := c.withToken(token)
	if err != nil {
		return Auth{}, err
	}
	sec, err := cl.Auth().Token().RenewSelfWithContext(ctx, int(increment/time.Second))
	if err != nil {
		if isClientError(err) {
			return Auth{}, fmt.Errorf("%w: %s", ErrTokenInvalid, vaultMessage(err))
		}
		return Auth{}, failed("renew token", err)
	}
	if sec == nil || sec.Auth == nil {
		return Auth{}, errors.New("renew token: empty response")
	}
	a := authOf(sec.Auth)
	if a.Token == "" {
		a.Token = token
	}
	return a, nil
}

// failed wraps an error that came back without an answer from Vault,
// marking an untrusted certificate for the caller to name the fix.
func failed(op string, err error) error {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Errorf("%s: %w: %w", op, ErrUntrustedCertificate, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isClientError reports whether Vault answered with a 4xx other than 429:
// a definite refusal, not an outage.
func isClientError(err error) bool {
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	return re.StatusCode >= 400 && re.StatusCode < 500 && re.StatusCode != http.StatusTooManyRequests
}

func vaultMessage(err error) string {
	var re *api.ResponseError
	if errors.As(err, &re) && len(re.Errors) > 0 {
		return strings.Join(re.Errors, "; ")
	}
	return "refused"
}
