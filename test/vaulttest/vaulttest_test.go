package vaulttest_test

import (
	"strings"
	"testing"
	"time"

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

// A persistent Vault can serve TLS from a private CA: only a client that
// trusts that CA gets through.
func TestPersistentServesTLSFromAPrivateCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := vaulttest.NewPrivateCA(dir, "vault-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(dir, "vault", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	v := vaulttest.StartPersistentWith(t, vaulttest.PersistentOptions{TLSCertFile: cert, TLSKeyFile: key, TLSCAFile: ca.CertFile})
	if !strings.HasPrefix(v.Addr, "https://") {
		t.Fatalf("address %s, want https", v.Addr)
	}
	untrusting, err := api.NewClient(&api.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusting.Sys().Health(); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("a client without the CA: %v, want an unknown authority", err)
	}
	cfg := api.DefaultConfig()
	cfg.Address = v.Addr
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: ca.CertFile}); err != nil {
		t.Fatal(err)
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.RootToken)
	if _, err := c.Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("a client trusting the CA: %v", err)
	}
}

// A three-node Raft cluster elects a new active node when its active one
// stops, and keeps what was written.
func TestClusterSurvivesItsActiveNode(t *testing.T) {
	c := vaulttest.StartCluster(t, 3)
	first, err := c.Active()
	if err != nil {
		t.Fatal(err)
	}
	standby := c.Nodes[(first+1)%3]
	cl, err := api.NewClient(&api.Config{Address: standby.Addr})
	if err != nil {
		t.Fatal(err)
	}
	cl.SetToken(c.RootToken)
	// Written through a standby: it forwards to the active node.
	if _, err := cl.Logical().Write("sys/policies/acl/probe", map[string]any{"policy": `path "x" { capabilities = ["read"] }`}); err != nil {
		t.Fatal(err)
	}
	c.Nodes[first].Stop()
	var next int
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if next, err = c.Active(); err == nil && next != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new active node within 60s")
		}
	}
	got, err := cl.Logical().Read("sys/policies/acl/probe")
	if err != nil || got == nil {
		t.Fatalf("the policy after the failover: %v, %v", got, err)
	}
	t.Logf("node %d active after node %d stopped", next+1, first+1)
}
