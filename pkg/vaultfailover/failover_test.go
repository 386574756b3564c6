package vaultfailover_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/pkg/vaultfailover"
)

// node is a Vault node stand-in that counts the requests it sees.
type node struct {
	*httptest.Server
	hits atomic.Int32
}

func newNode(t *testing.T, h http.HandlerFunc) *node {
	n := &node{}
	n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(n.Close)
	return n
}

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()
	return addr
}

func TestMovesPastNodesThatCannotServe(t *testing.T) {
	sealed := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"errors":["Vault is sealed"]}`, http.StatusServiceUnavailable)
	})
	active := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
	})
	var switches []string
	tr, err := vaultfailover.New(http.DefaultTransport, []string{deadAddr(t), sealed.URL, active.URL},
		func(from, to string) { switches = append(switches, to) })
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: tr}
	for range 3 {
		resp, err := c.Post("http://vault.invalid/v1/auth/approle/login", "application/json", strings.NewReader(`{"role_id":"r"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != `POST /v1/auth/approle/login {"role_id":"r"}` {
			t.Fatalf("answer %d %q: want the active node's, with the whole body", resp.StatusCode, b)
		}
	}
	if sealed.hits.Load() != 1 || active.hits.Load() != 3 {
		t.Errorf("sealed node asked %d times, active %d; want 1 and 3 (it stays with the node that answered)", sealed.hits.Load(), active.hits.Load())
	}
	if len(switches) != 1 || switches[0] != active.URL || tr.Current() != active.URL {
		t.Errorf("switches %v, current %s; want one, to %s", switches, tr.Current(), active.URL)
	}
}

// A request that reached a node and then failed may have been applied: it
// is not sent to another node.
func TestNeverSendsAgainWhatANodeMayHaveApplied(t *testing.T) {
	dropping := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	other := newNode(t, func(w http.ResponseWriter, r *http.Request) {})
	tr, err := vaultfailover.New(http.DefaultTransport, []string{dropping.URL, other.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Post("http://vault.invalid/v1/auth/approle/role/x/secret-id", "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("answer %d; want the dropped connection's error", resp.StatusCode)
	}
	if other.hits.Load() != 0 {
		t.Error("the request was sent again to another node")
	}
}

// Every node unable to serve: the caller gets the last one's answer.
func TestEveryNodeSealed(t *testing.T) {
	sealed := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "sealed", http.StatusServiceUnavailable)
	})
	tr, err := vaultfailover.New(http.DefaultTransport, []string{deadAddr(t), sealed.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Get("http://vault.invalid/v1/sys/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "sealed") {
		t.Fatalf("answer %d %q; want the sealed node's 503", resp.StatusCode, b)
	}
}

func TestRefusesBadAddresses(t *testing.T) {
	for _, addrs := range [][]string{nil, {"127.0.0.1:8200"}, {"ftp://vault:21"}, {"https://"}} {
		if _, err := vaultfailover.New(http.DefaultTransport, addrs, nil); err == nil {
			t.Errorf("New(%q) accepted", addrs)
		}
	}
}

// wedged is an address whose node takes connections and never answers.
func wedged(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never answered
		}
	}()
	t.Cleanup(func() { l.Close() })
	return "http://" + l.Addr().String()
}

// A node that takes the connection and never answers: a read or a login
// moves on after TryTimeout; a write that node may have applied does not.
func TestWedgedNode(t *testing.T) {
	active := newNode(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr, err := vaultfailover.New(http.DefaultTransport, []string{wedged(t), active.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.TryTimeout = 200 * time.Millisecond
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Post("http://vault.invalid/v1/auth/edge-enroll/login", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatalf("a login past a wedged node: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || tr.Current() != active.URL {
		t.Fatalf("answer %q from %s; want the live node's", b, tr.Current())
	}

	tr2, err := vaultfailover.New(http.DefaultTransport, []string{wedged(t), active.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr2.TryTimeout = 200 * time.Millisecond
	before := active.hits.Load()
	c2 := &http.Client{Transport: tr2, Timeout: time.Second}
	if resp, err := c2.Post("http://vault.invalid/v1/auth/edge-enroll/role/d/secret-id", "application/json", strings.NewReader(`{}`)); err == nil {
		resp.Body.Close()
		t.Fatal("a mint sent to a wedged node was answered")
	}
	if active.hits.Load() != before {
		t.Error("a mint the wedged node may have applied was sent to another node")
	}
}

// No address takes the request: the error names each with its own cause.
func TestEveryAddressDead(t *testing.T) {
	a, b := deadAddr(t), deadAddr(t)
	tr, err := vaultfailover.New(http.DefaultTransport, []string{a, b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&http.Client{Transport: tr}).Get("http://vault.invalid/v1/sys/health")
	var all *vaultfailover.AllFailedError
	if !errors.As(err, &all) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) || strings.Count(err.Error(), "refused") != 2 {
		t.Fatalf("err = %v; want both addresses with their causes", err)
	}
}
