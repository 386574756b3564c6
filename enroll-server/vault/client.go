package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/pkg/vaultfailover"
)

// ErrInvalidToken means Vault does not know the token (revoked, expired or
// never issued).
var ErrInvalidToken = errors.New("token is not valid")

// ErrNotFound means the Vault object does not exist.
var ErrNotFound = errors.New("not found in vault")

// Options configure a connection to Vault.
type Options struct {
	Address string
	// Failover lists further addresses of the same Vault cluster, tried in
	// order when Address cannot take a request (see vaultfailover).
	Failover []string
	// Switched, when set, is told when requests move to another address.
	Switched func(from, to string)
	// CAFile is a PEM bundle trusted for Vault's TLS certificate; empty means
	// the certificates in CAPath, or without it the system roots.
	CAFile string
	// CAPath is a directory of PEM CA certificates (as VAULT_CAPATH).
	CAPath  string
	Timeout time.Duration
	// Token, when set, is used as is (an admin's token). The server logs in
	// with its AppRole instead; see Server.
	Token string
	// Observe, when set, is told of every HTTP request to Vault: what it
	// did (see Operation), the status (0 when none came back) and how long
	// it took.
	Observe func(op string, status int, took time.Duration)
}

// observed reports every request's status and duration.
type observed struct {
	next    http.RoundTripper
	observe func(string, int, time.Duration)
}

func (o observed) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := o.next.RoundTrip(r)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	method := r.Method
	if r.URL.Query().Get("list") == "true" {
		method = "LIST" // as Vault's API sends a list
	}
	o.observe(Operation(method, r.URL.Path), status, time.Since(start))
	return resp, err
}

// idleVaultConns is how many idle connections to Vault the server keeps.
const idleVaultConns = 256

// newAPIClient builds a Vault client that does no retries of its own (the
// caller's retry layer is the only one) and ignores VAULT_* environment
// variables that would change which token or wrapping it uses.
func newAPIClient(o Options) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault config: %w", cfg.Error)
	}
	cfg.Address = o.Address
	cfg.MaxRetries = 0
	if o.Timeout > 0 {
		cfg.Timeout = o.Timeout
	}
	if o.CAFile != "" || o.CAPath != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: o.CAFile, CAPath: o.CAPath}); err != nil {
			return nil, fmt.Errorf("vault TLS: %w", err)
		}
	}
	// Every request in flight may hold a connection to Vault; keep that
	// many alive between requests rather than Go's default handful, which
	// would open and close connections (and fill TIME_WAIT) under load.
	if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		t.MaxIdleConns, t.MaxIdleConnsPerHost = idleVaultConns, idleVaultConns
	}
	if len(o.Failover) > 0 {
		ft, err := vaultfailover.New(cfg.HttpClient.Transport, append([]string{o.Address}, o.Failover...), o.Switched)
		if err != nil {
			return nil, fmt.Errorf("vault addresses: %w", err)
		}
		cfg.HttpClient.Transport = ft
	}
	if o.Observe != nil {
		cfg.HttpClient.Transport = observed{next: cfg.HttpClient.Transport, observe: o.Observe}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetWrappingLookupFunc(func(string, string) string { return "" })
	c.SetToken(o.Token)
	return c, nil
}

// TokenInfo is what a token lookup tells.
type TokenInfo struct {
	Accessor    string
	DisplayName string
	Path        string
	Meta        map[string]string
	Policies    []string
	EntityID    string
	TTL         time.Duration
}

// WrapInfo describes a response-wrapped secret.
type WrapInfo struct {
	Token    string
	Accessor string
	// WrappedAccessor is the accessor of what was wrapped: the secret ID.
	WrappedAccessor string
	CreationPath    string
	TTL             time.Duration
	CreationTime    time.Time
}

// statusOf extracts the HTTP status of a Vault error, or 0.
func statusOf(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// invalidToken reports whether Vault refused a request because it does not
// know the token that made it (expired, revoked or never issued): Vault
// then says "invalid token" besides "permission denied".
func invalidToken(err error) bool {
	return err != nil && statusOf(err) == http.StatusForbidden && strings.Contains(err.Error(), "invalid token")
}

// IsUnavailable reports whether err means Vault could not answer (network,
// sealed, standby, rate limited): the caller may try again later.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidToken) {
		return false
	}
	s := statusOf(err)
	return s == 0 || s == http.StatusTooManyRequests || s >= 500
}

func lookupToken(ctx context.Context, c *api.Client, token string) (TokenInfo, error) {
	sec, err := c.Logical().WriteWithContext(ctx, "auth/token/lookup", map[string]any{"token": token})
	if err != nil {
		if s := statusOf(err); s == http.StatusForbidden || s == http.StatusBadRequest {
			// Vault answers "bad token" for unknown tokens; a permission
			// error on our own token surfaces on every other call too.
			return TokenInfo{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
		}
		return TokenInfo{}, fmt.Errorf("look up token: %w", err)
	}
	if sec == nil || sec.Data == nil {
		// Vault answers an unknown token 403 "bad token" (above). An empty
		// answer is a node in the middle of a leader change (seen when
		// the active node of a cluster stops): not a verdict on the
		// token, so the caller may ask again.
		return TokenInfo{}, errors.New("look up token: vault gave an empty answer")
	}
	return tokenInfoFrom(sec.Data), nil
}

func tokenInfoFrom(d map[string]any) TokenInfo {
	ti := TokenInfo{
		Accessor:    str(d["accessor"]),
		DisplayName: str(d["display_name"]),
		Path:        str(d["path"]),
		EntityID:    str(d["entity_id"]),
		Meta:        map[string]string{},
	}
	if m, ok := d["meta"].(map[string]any); ok {
		for k, v := range m {
			ti.Meta[k] = str(v)
		}
	}
	ti.Policies = strs(d["policies"])
	if n, ok := d["ttl"].(json.Number); ok {
		if s, err := n.Int64(); err == nil {
			ti.TTL = time.Duration(s) * time.Second
		}
	}
	return ti
}

func str(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, str(e))
	}
	return out
}

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) + "s" }
