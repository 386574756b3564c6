// Package deps checks the product's dependency rules with `go list`: what
// each binary may link, and which one package may import each SDK.
package deps

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/edge-enroll/enroll/test/vaulttest"
)

const module = "github.com/edge-enroll/enroll"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = vaulttest.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func hasPrefix(path string, prefixes ...string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// What each binary must never link, for every platform it ships on.
func TestBinariesLinkOnlyWhatTheyNeed(t *testing.T) {
	rules := []struct {
		binary    string
		forbidden []string
	}{
		{"./cmd/enroll-client", []string{
			"github.com/gin-gonic/gin", "github.com/jackc/pgx", module + "/enroll-server",
			"github.com/hashicorp/vault/sdk", "github.com/hashicorp/vault/command", "github.com/hashicorp/vault/vault",
			"github.com/google/go-tpm-tools", module + "/test",
		}},
		{"./cmd/enroll-server", []string{
			module + "/enroll-client", "github.com/google/go-tpm-tools", "github.com/hashicorp/vault/sdk",
			"github.com/hashicorp/vault/vault", module + "/test",
		}},
		{"./cmd/enrollctl", []string{
			module + "/enroll-client", "github.com/gin-gonic/gin", "github.com/jackc/pgx", "github.com/google/go-tpm-tools",
			"github.com/hashicorp/vault/vault", module + "/test",
		}},
	}
	for _, goos := range []string{"linux", "windows"} {
		for _, r := range rules {
			t.Setenv("GOOS", goos)
			for _, p := range list(t, "-deps", r.binary) {
				if hasPrefix(p.ImportPath, r.forbidden...) {
					t.Errorf("%s (%s) links %s", r.binary, goos, p.ImportPath)
				}
			}
		}
	}
}

// Each SDK is imported by its adapter alone; the rest of the product
// speaks to the adapter's interfaces.
func TestEachSDKHasOneAdapter(t *testing.T) {
	adapters := map[string][]string{
		"github.com/gin-gonic/gin":                 {module + "/enroll-server/httpapi"},
		"github.com/jackc/pgx":                     {module + "/enroll-server/pgstore"},
		"github.com/hashicorp/vault/api":           {module + "/enroll-client/vault", module + "/enroll-server/vault"},
		"go.etcd.io/bbolt":                         {module + "/enroll-client/state", module + "/enroll-server/boltstore"},
		"github.com/prometheus/client_golang":      {module + "/enroll-client/metrics", module + "/enroll-server/metrics"},
		"github.com/google/go-tpm":                 {module + "/enroll-client/tpm", module + "/enroll-server/attest", module + "/pkg/ekprofile"},
		"github.com/kardianos/service":             {module + "/pkg/daemon"},
		"github.com/google/go-tpm-tools/simulator": {},
		"github.com/hashicorp/vault/command":       {},
	}
	for _, goos := range []string{"linux", "windows"} {
		t.Setenv("GOOS", goos)
		for _, p := range list(t, "./cmd/...", "./enroll-client/...", "./enroll-server/...", "./pkg/...") {
			for _, imp := range p.Imports {
				for sdk, allowed := range adapters {
					if hasPrefix(imp, sdk) && !hasPrefix(p.ImportPath, allowed...) {
						t.Errorf("%s imports %s (%s); only %v may", p.ImportPath, imp, goos, allowed)
					}
				}
			}
		}
	}
}
