// Package vaultfailover sends each Vault request to the first of several
// addresses that takes it: the nodes of a Vault cluster, where any node
// forwards to the active one and the active one may be gone.
//
// A request moves to the next address only when Vault cannot have acted
// on it: the connection was never made, or the node answered that it
// cannot serve (503: sealed, or a standby with no active node to forward
// to). A request that reached a node and failed on the way back is
// returned as it is: it may have been applied, and only the caller knows
// whether it is safe to send again.
package vaultfailover

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
)

// maxBody bounds the request body kept in memory to send again.
const maxBody = 4 << 20

// Transport is an http.RoundTripper over several Vault addresses. It
// stays with the address that last answered.
type Transport struct {
	next     http.RoundTripper
	addrs    []*url.URL
	current  atomic.Int32
	switched func(from, to string)
}

// New returns a Transport sending through next to addrs, in this order of
// preference. switched, when set, is told each time the Transport moves
// to another address.
func New(next http.RoundTripper, addrs []string, switched func(from, to string)) (*Transport, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no Vault address")
	}
	t := &Transport{next: next, switched: switched}
	for _, a := range addrs {
		u, err := url.Parse(a)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("vault address %q: want http(s)://host:port", a)
		}
		t.addrs = append(t.addrs, u)
	}
	return t, nil
}

// Current is the address requests go to now.
func (t *Transport) Current() string { return t.addrs[t.current.Load()].String() }

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := replayable(r)
	if err != nil {
		return nil, err
	}
	start := int(t.current.Load())
	var resp *http.Response
	for i := range t.addrs {
		n := (start + i) % len(t.addrs)
		if resp != nil { // the previous node's 503, not returned
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		req := r.Clone(r.Context())
		req.URL.Scheme, req.URL.Host, req.Host = t.addrs[n].Scheme, t.addrs[n].Host, ""
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err = t.next.RoundTrip(req)
		if err != nil && !neverSent(err) {
			return nil, err
		}
		if err == nil && resp.StatusCode != http.StatusServiceUnavailable {
			if n != start && t.current.CompareAndSwap(int32(start), int32(n)) && t.switched != nil {
				t.switched(t.addrs[start].String(), t.addrs[n].String())
			}
			return resp, nil
		}
		if i == len(t.addrs)-1 {
			return resp, err // every node refused: the last one's answer
		}
	}
	return resp, err
}

// replayable reads a request's body so it can be sent to another node.
func replayable(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("vault request body over %d bytes", maxBody)
	}
	return b, nil
}

// neverSent reports whether err means no byte of the request reached
// Vault: the connection (or the name lookup before it) failed.
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}
