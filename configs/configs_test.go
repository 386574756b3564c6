// Package configs holds the example configuration files; its test proves
// they parse and show every key with its default.
package configs

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	clientconfig "github.com/edge-enroll/enroll/enroll-client/config"
	serverconfig "github.com/edge-enroll/enroll/enroll-server/config"
)

func TestServerExampleShowsEveryDefault(t *testing.T) {
	f, err := os.Open("enroll-server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := serverconfig.Parse(f)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	want := serverconfig.Default()
	want.Fleets = []serverconfig.Fleet{serverconfig.FleetDefaults(serverconfig.Fleet{Name: "example"})}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("example differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("example does not validate: %v", err)
	}
	assertEveryKeyShown(t, "enroll-server.yaml", reflect.TypeOf(serverconfig.File{}))
}

func TestClientExampleShowsEveryDefault(t *testing.T) {
	f, err := os.Open("enroll-client.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := clientconfig.Parse(f)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if want := clientconfig.Default(); !reflect.DeepEqual(got, want) {
		t.Fatalf("example differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
	assertEveryKeyShown(t, "enroll-client.yaml", reflect.TypeOf(clientconfig.File{}))
}

// assertEveryKeyShown checks that every yaml key of typ appears in the file.
func assertEveryKeyShown(t *testing.T, path string, typ reflect.Type) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var missing []string
	walk(typ, doc, "", &missing)
	if len(missing) > 0 {
		t.Fatalf("%s does not show: %s", path, strings.Join(missing, ", "))
	}
}

func walk(typ reflect.Type, doc any, prefix string, missing *[]string) {
	switch typ.Kind() {
	case reflect.Struct:
		m, _ := doc.(map[string]any)
		for i := range typ.NumField() {
			key := strings.Split(typ.Field(i).Tag.Get("yaml"), ",")[0]
			v, ok := m[key]
			if !ok {
				*missing = append(*missing, prefix+key)
				continue
			}
			walk(typ.Field(i).Type, v, prefix+key+".", missing)
		}
	case reflect.Slice:
		l, _ := doc.([]any)
		if typ.Elem().Kind() != reflect.Struct {
			return // a list of plain values: shown once the key is
		}
		if len(l) == 0 {
			*missing = append(*missing, strings.TrimSuffix(prefix, ".")+"[0]")
			return
		}
		walk(typ.Elem(), l[0], prefix, missing)
	}
}

func TestUnknownKeysAreNamed(t *testing.T) {
	_, err := clientconfig.Parse(strings.NewReader("device_id: a\nsinks:\n  - path: /x\n    colour: red\n"))
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("client: error %v does not name the unknown key", err)
	}
	_, err = serverconfig.Parse(strings.NewReader("vault:\n  adress: https://x\n"))
	if err == nil || !strings.Contains(err.Error(), "adress") {
		t.Fatalf("server: error %v does not name the unknown key", err)
	}
}

func TestValidationNamesTheKey(t *testing.T) {
	f := serverconfig.Default()
	f.Vault.Address = "http://vault.example.com"
	f.Fleets = []serverconfig.Fleet{serverconfig.FleetDefaults(serverconfig.Fleet{Name: "Bad Name"})}
	f.Console = serverconfig.Console{Listen: f.Listen, AuthMount: "../sys"}
	f.Vault.FailoverAddresses = []string{"https://vault-2:8200", "vault-3:8200", "https://vault-2:8200", "HTTPS://Vault-2:8200/", "https://vault-4:99999"}
	err := f.Validate()
	for _, key := range []string{"vault.address", "fleets[0].name", "console.listen", "console.auth_mount",
		"vault.failover_addresses[1]", "vault.failover_addresses[2]: https://vault-2:8200 is listed twice",
		"vault.failover_addresses[3]: HTTPS://Vault-2:8200/ is listed twice", "vault.failover_addresses[4]: \"https://vault-4:99999\": port 99999"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("validation error %v does not name %s", err, key)
		}
	}
}

func TestTPMValidationNamesTheKey(t *testing.T) {
	f := serverconfig.Default()
	fl := serverconfig.FleetDefaults(serverconfig.Fleet{Name: "acme"})
	fl.TPM.Mode = "required"
	fl.TPM.EKAllowList = []string{"not-hex"}
	fl.TPM.PCRs = []int{0, 24}
	fl.TPM.PCRPolicy = map[int][]string{5: {"00"}}
	fl.TPM.BootPolicy = &serverconfig.BootPolicy{SecureBoot: "sometimes", PCR4Allowed: []string{"abc"}}
	off := serverconfig.FleetDefaults(serverconfig.Fleet{Name: "plain"})
	off.TPM.BootPolicy = &serverconfig.BootPolicy{}
	optional := serverconfig.FleetDefaults(serverconfig.Fleet{Name: "mixed"})
	optional.TPM.Mode, optional.TPM.EKAllowList = "optional", []string{strings.Repeat("ab", 32)}
	optional.TPM.BootPolicy = &serverconfig.BootPolicy{SecureBoot: "required"}
	f.Fleets = []serverconfig.Fleet{fl, off, optional}
	err := f.Validate()
	for _, key := range []string{"fleets[0].tpm.ek_allow_list[0]", "fleets[0].tpm.pcrs: PCR 24", "fleets[0].tpm.pcr_policy: PCR 5 is not among",
		"fleets[0].tpm.boot_policy.secure_boot", "fleets[0].tpm.boot_policy.pcr4_allowed[0]", "fleets[1].tpm.boot_policy: a boot policy needs TPM attestation",
		"fleets[2].tpm.boot_policy: a boot policy needs mode: required"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("validation error %v does not name %s", err, key)
		}
	}
	fl = serverconfig.FleetDefaults(serverconfig.Fleet{Name: "acme"})
	fl.TPM.Mode = "required"
	f.Fleets = []serverconfig.Fleet{fl}
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "fleets[0].tpm.ek_ca_file") {
		t.Errorf("a TPM fleet with neither CAs nor allow-list: %v", err)
	}
	for _, tc := range []struct{ fetch, url, caFile, key string }{
		{"sometimes", "", "cas.pem", "fleets[0].tpm.ek_cert_fetch: want off or allowed"},
		{"allowed", "http://ekop.example/", "cas.pem", "fleets[0].tpm.ek_cert_url"},
		{"allowed", "", "", "fleets[0].tpm.ek_cert_fetch: a fetched EK certificate must chain"},
	} {
		fl = serverconfig.FleetDefaults(serverconfig.Fleet{Name: "acme"})
		fl.TPM.Mode, fl.TPM.EKCertFetch, fl.TPM.EKCertURL, fl.TPM.EKCAFile = "required", tc.fetch, tc.url, tc.caFile
		fl.TPM.EKAllowList = []string{strings.Repeat("a", 64)}
		f.Fleets = []serverconfig.Fleet{fl}
		if err := f.Validate(); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("ek_cert_fetch %q url %q: %v, want %s", tc.fetch, tc.url, err, tc.key)
		}
	}
	c := clientconfig.Default()
	c.DeviceID, c.TPM.Mode, c.TPM.EK = "dev-1", "sometimes", "dsa"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tpm.mode") || !strings.Contains(err.Error(), "tpm.ek") {
		t.Errorf("client TPM validation: %v", err)
	}
}
