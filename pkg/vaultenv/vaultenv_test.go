package vaultenv

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestScrub(t *testing.T) {
	t.Setenv("VAULT_SKIP_VERIFY", "1")
	t.Setenv("VAULT_AGENT_ADDR", "http://127.0.0.1:1")
	t.Setenv("NOT_VAULT_ADDR", "kept")
	got := Scrub()
	if !slices.Contains(got, "VAULT_AGENT_ADDR") || !slices.Contains(got, "VAULT_SKIP_VERIFY") || !slices.IsSorted(got) {
		t.Fatalf("Scrub = %v", got)
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") {
			t.Fatalf("%s is still set", kv)
		}
	}
	if os.Getenv("NOT_VAULT_ADDR") != "kept" {
		t.Fatal("a variable that is not Vault's was removed")
	}
}
