package bundle_test

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/edge-enroll/enroll/pkg/bundle"
)

func valid() bundle.Bundle {
	return bundle.Bundle{
		Version:     bundle.Version,
		Fleet:       "acme",
		ServerURL:   "https://enroll.example.com:8443",
		VaultAddr:   "https://vault.example.com:8200",
		EnrollMount: "edge-enroll",
		DeviceMount: "edge-devices-acme",
		RoleID:      "0b4c2c8e-6a7f-4f1e-9a55-2f8d7d2c1a10",
		SecretID:    "5e1c1f0a-2b8e-4c3d-8d6e-7f9a0b1c2d3e",
		Generation:  1,
	}
}

func TestRoundTrip(t *testing.T) {
	b := valid()
	b.TPMEK = []string{"ecc384", "rsa2048"}
	data, err := b.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	got, err := bundle.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !reflect.DeepEqual(*got, b) {
		t.Fatalf("round trip changed the bundle:\n got %+v\nwant %+v", *got, b)
	}
}

func TestParseRefuses(t *testing.T) {
	good, err := func() ([]byte, error) { b := valid(); return b.Marshal() }()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{"unknown field", strings.Replace(string(good), `"version"`, `"colour": "red", "version"`, 1), `unknown field "colour"`},
		{"trailing data", string(good) + "{}", "trailing data"},
		{"unknown EK kind", strings.Replace(string(good), `"version"`, `"tpm_ek": ["rsa4096"], "version"`, 1), "bundle tpm_ek: unknown EK kind"},
		{"not json", "role_id=1", "decode bundle"},
		{"too large", strings.Repeat(" ", bundle.MaxSize+1), "larger than"},
		{"bad version", strings.Replace(string(good), `"version": 1`, `"version": 2`, 1), "bundle version"},
		{"clear http to remote", strings.Replace(string(good), "https://vault.example.com", "http://vault.example.com", 1), "vault_addr"},
		{"bad fleet", strings.Replace(string(good), `"acme"`, `"ACME!"`, 1), "bundle fleet"},
		{"missing secret", strings.Replace(string(good), `"5e1c1f0a-2b8e-4c3d-8d6e-7f9a0b1c2d3e"`, `""`, 1), "secret_id: missing"},
		{"malformed role", strings.Replace(string(good), `"0b4c2c8e-6a7f-4f1e-9a55-2f8d7d2c1a10"`, `"a b"`, 1), "role_id: malformed"},
		{"bad ca", strings.Replace(string(good), `"version"`, `"server_ca_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "version"`, 1), "server_ca_pem"},
		{"generation zero", strings.Replace(string(good), `"generation": 1`, `"generation": 0`, 1), "generation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bundle.Parse(strings.NewReader(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateURL(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"https://vault.example.com:8200", true},
		{"http://127.0.0.1:8200", true},
		{"http://[::1]:8200", true},
		{"http://localhost:8200", true},
		{"http://10.0.0.1:8200", false},
		{"ftp://vault", false},
		{"https://user:pw@vault", false},
		{"vault.example.com", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := bundle.ValidateURL(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidateURL(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestLogValueHidesSecret(t *testing.T) {
	b := valid()
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", "bundle", b)
	if s := buf.String(); strings.Contains(s, b.SecretID) || strings.Contains(s, b.RoleID) || !strings.Contains(s, `"fleet":"acme"`) {
		t.Fatalf("LogValue leaks a credential: %s", s)
	}
}

func FuzzParse(f *testing.F) {
	b := valid()
	good, _ := b.Marshal()
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := bundle.Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever parses must be valid and survive a round trip.
		out, err := got.Marshal()
		if err != nil {
			t.Fatalf("parsed bundle does not marshal: %v", err)
		}
		again, err := bundle.Parse(bytes.NewReader(out))
		if err != nil || !reflect.DeepEqual(*again, *got) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}
