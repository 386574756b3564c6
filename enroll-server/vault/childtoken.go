package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// adminPolicies keeps the edge-enroll admin and operator policies of a
// token's policies.
func adminPolicies(policies []string) []string {
	var out []string
	for _, p := range policies {
		if p == "root" {
			return []string{AdminPolicy}
		}
		for _, base := range []string{AdminPolicy, OperatorPolicy} {
			if p == base || strings.HasPrefix(p, base+"-") {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// AdminChildToken makes a child of the administrator's token that holds
// only its edge-enroll admin and operator policies and lives ttl, not
// renewable: what enrollctl sends to the enrollment server instead of the
// administrator's own token. Vault gives a child only policies its parent
// holds; the child carries the parent's entity, so the audit log still
// names who acted.
func (a *Admin) AdminChildToken(ctx context.Context, ttl time.Duration) (string, error) {
	self, err := a.c.Auth().Token().LookupSelfWithContext(ctx)
	switch {
	case invalidToken(err):
		return "", fmt.Errorf("%w: Vault refused it (expired, revoked or mistyped)", ErrInvalidToken)
	case statusOf(err) == http.StatusForbidden:
		return "", errors.New("your Vault token may not look itself up (Vault's default policy allows that): log in with a token that holds the default policy and your edge-enroll admin policy")
	case err != nil:
		return "", fmt.Errorf("look up your Vault token: %w", err)
	}
	raw, _ := self.TokenPolicies()
	policies := adminPolicies(raw)
	if len(policies) == 0 {
		return "", fmt.Errorf("your Vault token holds none of the edge-enroll admin or operator policies (it holds %s): ask for %s-FLEET or %s-FLEET (or, for every fleet, %s or %s), then log in to Vault again",
			strings.Join(raw, ", "), AdminPolicy, OperatorPolicy, AdminPolicy, OperatorPolicy)
	}
	name, _ := self.Data["display_name"].(string)
	child, err := a.c.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{
		Policies: policies, NoDefaultPolicy: true, TTL: ttl.String(), ExplicitMaxTTL: ttl.String(),
		Renewable: new(false), DisplayName: "enrollctl-" + name,
	})
	if invalidToken(err) {
		// It expired between the two calls.
		return "", fmt.Errorf("%w: Vault refused it (expired, revoked or mistyped)", ErrInvalidToken)
	}
	if err != nil {
		return "", fmt.Errorf("make a short-lived child of your Vault token (the admin policies allow auth/token/create; run enrollctl setup again if they do not): %w", err)
	}
	if child.Auth == nil || child.Auth.ClientToken == "" {
		return "", errors.New("vault made no child token")
	}
	return child.Auth.ClientToken, nil
}
