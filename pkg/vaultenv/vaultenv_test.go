package vaultenv

import (
	"os"
	"slices"
	"testing"
)

func TestScrub(t *testing.T) {
	t.Setenv("VAULT_SKIP_VERIFY", "1")
	t.Setenv("VAULT_AGENT_ADDR", "http://127.0.0.1:1")
	t.Setenv("NOT_VAULT_ADDR", "kept")
	got := Scrub()
	if !slices.Equal(got, []string{"VAULT_AGENT_ADDR", "VAULT_SKIP_VERIFY"}) {
		t.Fatalf("Scrub = %v", got)
	}
	if _, ok := os.LookupEnv("VAULT_SKIP_VERIFY"); ok {
		t.Fatal("VAULT_SKIP_VERIFY is still set")
	}
	if os.Getenv("NOT_VAULT_ADDR") != "kept" {
		t.Fatal("a variable that is not Vault's was removed")
	}
}
