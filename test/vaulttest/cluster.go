package vaulttest

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Cluster is a Vault cluster as production runs it: n nodes with Raft
// storage, each a process of its own on a loopback port, one active and
// the others standbys that forward requests to it.
type Cluster struct {
	Nodes     []*Persistent
	RootToken string
}

// StartCluster starts n nodes, initialises the first, joins the others to
// it, unseals them all, and waits until every node is a Raft voter, so
// that the cluster survives the loss of its active node.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Require(t)
	c := &Cluster{}
	for i := range n {
		port, err := freePortPair()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		p := &Persistent{bin: bin, dir: dir, port: port, config: filepath.Join(dir, "vault.hcl"), scheme: "http",
			hc: &http.Client{Timeout: 2 * time.Minute}}
		join := ""
		if i > 0 {
			join = fmt.Sprintf("  retry_join {\n    leader_api_addr = %q\n  }\n", c.Nodes[0].Addr)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		hcl := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "node%d"
%s}
listener "tcp" {
  address     = %q
  tls_disable = true
}
disable_mlock = true
api_addr      = "http://%s"
cluster_addr  = "http://127.0.0.1:%d"
`, filepath.Join(dir, "data"), i+1, join, addr, addr, port+1)
		if err := os.WriteFile(p.config, []byte(hcl), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.launch(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop() })
		if i == 0 {
			var init struct {
				Keys      []string `json:"keys"`
				RootToken string   `json:"root_token"`
			}
			if err := p.call(http.MethodPut, "/v1/sys/init", map[string]any{"secret_shares": 1, "secret_threshold": 1}, &init); err != nil {
				t.Fatalf("init vault: %v", err)
			}
			p.unsealKey, p.RootToken, c.RootToken = init.Keys[0], init.RootToken, init.RootToken
			if err := p.Unseal(); err != nil {
				t.Fatal(err)
			}
		} else {
			p.unsealKey, p.RootToken = c.Nodes[0].unsealKey, c.RootToken
			// Until retry_join has reached the leader the node says it is
			// not initialised.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
				err := p.call(http.MethodPut, "/v1/sys/unseal", map[string]any{"key": p.unsealKey}, nil)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("unseal node %d: %v\n%s", i+1, err, p.Log())
				}
			}
			// 429: an unsealed standby.
			if err := p.poll(2*time.Minute, func(code int) bool { return code == http.StatusTooManyRequests }); err != nil {
				t.Fatalf("node %d: %v", i+1, err)
			}
		}
		c.Nodes = append(c.Nodes, p)
	}
	if err := c.waitVoters(n, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitVoters waits until the Raft configuration holds n voters.
func (c *Cluster) waitVoters(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var cfg struct {
			Data struct {
				Config struct {
					Servers []struct {
						Voter bool `json:"voter"`
					} `json:"servers"`
				} `json:"config"`
			} `json:"data"`
		}
		if i, err := c.Active(); err == nil {
			if err := c.Nodes[i].call(http.MethodGet, "/v1/sys/storage/raft/configuration", nil, &cfg); err == nil {
				voters := 0
				for _, s := range cfg.Data.Config.Servers {
					if s.Voter {
						voters++
					}
				}
				if voters == n {
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the cluster did not reach %d voters in time", n)
}

// Active is the index of the active node.
func (c *Cluster) Active() (int, error) {
	hc := &http.Client{Timeout: time.Second}
	for i, p := range c.Nodes {
		resp, err := hc.Get(p.Addr + "/v1/sys/health")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return i, nil
		}
	}
	return 0, errors.New("no active node")
}

// Addrs are the nodes' API addresses, in order.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, p := range c.Nodes {
		out[i] = p.Addr
	}
	return out
}
