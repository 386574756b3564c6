package vault

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Vault answers 500 to one of two revocations of the same token at once
// (seen with two requests presenting one enrollment token): the token is
// gone all the same, and that is no failure. A 500 that leaves the token
// live is one.
func TestRevocationRaceIsNoFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stillLive bool
		wantErr   bool
	}{
		{"revoked by the other request", false, false},
		{"still live", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/v1/auth/token/revoke-self":
					w.WriteHeader(http.StatusInternalServerError)
					_, _ = w.Write([]byte(`{"errors":["1 error occurred:\n\t* internal error\n\n"]}`))
				case "/v1/auth/token/lookup":
					if r.Header.Get("X-Vault-Token") != "server-token" {
						t.Errorf("the lookup was made with %q, want the server's own token", r.Header.Get("X-Vault-Token"))
					}
					if !tc.stillLive {
						w.WriteHeader(http.StatusForbidden)
						_, _ = w.Write([]byte(`{"errors":["bad token"]}`))
						return
					}
					_, _ = w.Write([]byte(`{"data":{"accessor":"a","path":"auth/edge-enroll/login","meta":{}}}`))
				default:
					http.NotFound(w, r)
				}
			}))
			defer fake.Close()
			s, err := NewServer(Options{Address: fake.URL, Timeout: 5 * time.Second}, DefaultLayout(), Credentials{}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			s.c.SetToken("server-token")
			err = s.RevokeEnrollmentToken(context.Background(), "enrollment-token")
			if (err != nil) != tc.wantErr {
				t.Fatalf("RevokeEnrollmentToken = %v, want error: %v", err, tc.wantErr)
			}
		})
	}
}
