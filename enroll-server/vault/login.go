package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// ErrBadLogin means Vault refused a username and password.
var ErrBadLogin = errors.New("vault refused the username or password")

// PersonLogin is a person's Vault login: the token stays with the server
// that asked, never with the browser.
type PersonLogin struct {
	Token string
	TTL   time.Duration
}

// PasswordLogin logs a person in through the auth method mounted at mount
// with a username and password: userpass and ldap both take the username
// in the path and the password in the body, so one call serves both.
func (s *Server) PasswordLogin(ctx context.Context, mount, user, password string) (PersonLogin, error) {
	c, err := s.c.Clone()
	if err != nil {
		return PersonLogin{}, err
	}
	c.ClearToken()
	sec, err := c.Logical().WriteWithContext(ctx, "auth/"+mount+"/login/"+url.PathEscape(user), map[string]any{"password": password})
	if err != nil {
		if st := statusOf(err); st == http.StatusBadRequest || st == http.StatusForbidden {
			return PersonLogin{}, ErrBadLogin
		}
		return PersonLogin{}, fmt.Errorf("log in through %s: %w", mount, err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return PersonLogin{}, ErrBadLogin
	}
	return PersonLogin{Token: sec.Auth.ClientToken, TTL: time.Duration(sec.Auth.LeaseDuration) * time.Second}, nil
}

// RevokeSelf has a token revoke itself (a person signing out): no right
// of the server's own is needed. An already invalid token is not an error.
func (s *Server) RevokeSelf(ctx context.Context, token string) error {
	c, err := s.c.Clone()
	if err != nil {
		return err
	}
	c.SetToken(token)
	_, err = c.Logical().WriteWithContext(ctx, "auth/token/revoke-self", nil)
	if err != nil && statusOf(err) != http.StatusForbidden {
		return fmt.Errorf("revoke own token: %w", err)
	}
	return nil
}
