package vaulttest_test

import (
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/test/vaulttest"
)

// A persistent Vault keeps its data across a restart and a seal.
func TestPersistentKeepsDataAcrossRestart(t *testing.T) {
	v := vaulttest.StartPersistent(t)
	c, err := api.NewClient(&api.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.RootToken)
	if err := c.Sys().Mount("kv", &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KVv2("kv").Put(t.Context(), "k", map[string]any{"v": "kept"}); err != nil {
		t.Fatal(err)
	}
	v.Stop()
	if _, err := c.KVv2("kv").Get(t.Context(), "k"); err == nil {
		t.Fatal("read succeeded while vault was stopped")
	}
	if err := v.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := v.Seal(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KVv2("kv").Get(t.Context(), "k"); err == nil {
		t.Fatal("read succeeded while vault was sealed")
	}
	if err := v.Unseal(); err != nil {
		t.Fatal(err)
	}
	sec, err := c.KVv2("kv").Get(t.Context(), "k")
	if err != nil || sec.Data["v"] != "kept" {
		t.Fatalf("after restart, seal and unseal: %v %v", sec, err)
	}
}
