// Package vaultfailover sends each Vault request to the first of several
// addresses that takes it: the nodes of a Vault cluster, where any node
// forwards to the active one and the active one may be gone.
//
// A request moves to the next address only when Vault cannot have acted
// on it: the connection was never made, or the node answered that it
// cannot serve (503: sealed, or a standby with no active node to forward
// to). A request that reached a node and failed on the way back is
// returned as it is: it may have been applied, and only the caller knows
// whether it is safe to send again. Requests that are safe to send twice
// (reads, lookups, logins) also move on from a node that takes the
// connection but does not answer within TryTimeout: a wedged node.
package vaultfailover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
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
	// TryTimeout bounds one node's answer to a request that is safe to
	// send again (see repeatable); 0 means DefaultTryTimeout.
	TryTimeout time.Duration
}

// DefaultTryTimeout is how long a node may take to answer a repeatable
// request before the next node is asked.
const DefaultTryTimeout = 3 * time.Second

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
	var fails []string
	for i := range t.addrs {
		n := (start + i) % len(t.addrs)
		resp, retry, err := t.try(r, body, t.addrs[n])
		if !retry {
			if err == nil && n != start && t.current.CompareAndSwap(int32(start), int32(n)) && t.switched != nil {
				t.switched(t.addrs[start].String(), t.addrs[n].String())
			}
			return resp, err
		}
		if i == len(t.addrs)-1 && err == nil {
			return resp, nil // every node refused: the last one's answer
		}
		if err != nil {
			fails = append(fails, fmt.Sprintf("%s: %v", t.addrs[n], err))
		} else {
			fails = append(fails, fmt.Sprintf("%s: %s", t.addrs[n], resp.Status))
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if i == len(t.addrs)-1 {
			return nil, &AllFailedError{Tried: fails, Last: err}
		}
	}
	panic("unreachable")
}

// AllFailedError says why no Vault address took a request, address by
// address.
type AllFailedError struct {
	Tried []string
	Last  error
}

func (e *AllFailedError) Error() string {
	return fmt.Sprintf("no Vault address took the request (%s)", strings.Join(e.Tried, "; "))
}

func (e *AllFailedError) Unwrap() error { return e.Last }

// try sends r to one node. retry reports whether the next node may be
// asked: Vault cannot have acted on it, or it is safe to send again.
func (t *Transport) try(r *http.Request, body []byte, addr *url.URL) (_ *http.Response, retry bool, _ error) {
	ctx, cancel := r.Context(), context.CancelFunc(func() {})
	repeat := repeatable(r)
	if repeat {
		limit := t.TryTimeout
		if limit <= 0 {
			limit = DefaultTryTimeout
		}
		ctx, cancel = context.WithTimeout(ctx, limit)
	}
	req := r.Clone(ctx)
	req.URL.Scheme, req.URL.Host, req.Host = addr.Scheme, addr.Host, ""
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		cancel()
		wedged := repeat && errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil
		return nil, neverSent(err) || wedged, err
	}
	// The try's deadline must not cut the caller's read of the body.
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, resp.StatusCode == http.StatusServiceUnavailable, nil
}

// cancelOnClose releases a try's timeout once its body is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// repeatable reports whether sending r twice does no harm: a read, a
// lookup, a login (a second token that expires unused).
func repeatable(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == "LIST" {
		return true
	}
	p := r.URL.Path
	return strings.HasSuffix(p, "/lookup") || strings.HasSuffix(p, "/lookup-self") || strings.HasSuffix(p, "/login") ||
		strings.HasSuffix(p, "/capabilities") || strings.HasSuffix(p, "/capabilities-self")
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
