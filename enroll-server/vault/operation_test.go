package vault

import "testing"

func TestOperation(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"PUT", "/v1/auth/token/lookup", "PUT auth/token/lookup"},
		{"POST", "/v1/auth/token/revoke-self", "POST auth/token/revoke-self"},
		{"POST", "/v1/auth/edge-enroll/login", "POST auth/*/login"},
		{"POST", "/v1/auth/edge-devices-acme/role/cam-01", "POST auth/*/role/*"},
		{"PUT", "/v1/auth/edge-devices-acme/role/cam-01/secret-id", "PUT auth/*/role/*/secret-id"},
		{"LIST", "/v1/auth/edge-devices-acme/role/cam-01/secret-id", "LIST auth/*/role/*/secret-id"},
		{"POST", "/v1/auth/edge-devices-acme/role/cam-01/secret-id-accessor/destroy", "POST auth/*/role/*/secret-id-accessor/destroy"},
		{"POST", "/v1/sys/wrapping/lookup", "POST sys/wrapping/lookup"},
		{"POST", "/v1/sys/wrapping/unwrap", "POST sys/wrapping/unwrap"},
		{"POST", "/v1/sys/capabilities", "POST sys/capabilities"},
		{"GET", "/v1/edge-kv/data/enroll/fleets/acme/generations", "GET */data/enroll/fleets/*/generations"},
		{"POST", "/v1/identity/entity/id/0f1e", "POST identity/entity/id/*"},
		{"POST", "/v1/identity/lookup/entity", "POST identity/lookup/entity"},
		// Anything else is one bounded name, never the path itself.
		{"GET", "/v1/secret/data/some/device/name", "other"},
		{"POST", "/v1/auth/a/role/b/c/d/e", "other"},
		{"GET", "/elsewhere", "other"},
	} {
		if got := Operation(c.method, c.path); got != c.want {
			t.Errorf("Operation(%s %s) = %q, want %q", c.method, c.path, got, c.want)
		}
	}
}
