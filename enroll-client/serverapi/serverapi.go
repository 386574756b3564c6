// Package serverapi is enroll-client's HTTP client for enroll-server.
package serverapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// maxResponse caps what the client reads from the server.
const maxResponse = 256 << 10

// maxScheduled is the furthest return time a server may give a device, in
// milliseconds; a larger one is treated as a plain Retry-After.
const maxScheduled = 3600 * 1000

// Error is a refusal from the server: its status, its error body and any
// Retry-After it sent.
type Error struct {
	Status     int
	Err        wire.Error
	RetryAfter time.Duration
	// Scheduled: RetryAfter is a return time of this device's own (the
	// server's retry_after_ms), not a delay shared by a crowd.
	Scheduled bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("enroll-server answered %d %s: %s", e.Status, e.Err.Code, e.Err.Message)
}

// ErrUntrustedCertificate: the server's TLS certificate is not signed by a
// CA the client trusts for the server.
var ErrUntrustedCertificate = errors.New("the server's certificate is signed by an unknown authority")

// Retryable reports whether the same request may succeed later.
func (e *Error) Retryable() bool {
	return e.Err.Code.Retryable() || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Client calls enroll-server.
type Client struct {
	base string
	hc   *http.Client
}

// New builds a client for baseURL trusting caPool (nil: system roots).
func New(baseURL string, caPool *x509.CertPool, timeout time.Duration) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A device that comes back (a refresh, the next step after its
	// connection was closed) resumes its TLS session: neither end signs
	// or verifies a certificate again.
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: caPool,
		ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	tr.Proxy = http.ProxyFromEnvironment
	// A device makes a handful of requests, one at a time: HTTP/1.1 with
	// keep-alive costs both ends less than setting up HTTP/2 streams.
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: &http.Client{Transport: tr, Timeout: timeout}}
}

// CloseIdleConnections closes the connections kept open for the next
// request.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Enroll sends an enrollment request.
func (c *Client) Enroll(ctx context.Context, req wire.EnrollRequest) (wire.EnrollResponse, error) {
	return call[wire.EnrollResponse](ctx, c, wire.PathEnroll, req)
}

// Admit asks for an admission ticket before the device touches Vault.
func (c *Client) Admit(ctx context.Context, req wire.AdmitRequest) (wire.AdmitResponse, error) {
	return call[wire.AdmitResponse](ctx, c, wire.PathAdmit, req)
}

// Challenge asks for a TPM attestation challenge.
func (c *Client) Challenge(ctx context.Context, req wire.ChallengeRequest) (wire.ChallengeResponse, error) {
	return call[wire.ChallengeResponse](ctx, c, wire.PathChallenge, req)
}

// Acknowledge confirms the device's login.
func (c *Client) Acknowledge(ctx context.Context, req wire.AckRequest) (wire.AckResponse, error) {
	return call[wire.AckResponse](ctx, c, wire.PathAck, req)
}

// Report tells the server about a bad wrapped credential.
func (c *Client) Report(ctx context.Context, req wire.ReportRequest) (wire.ReportResponse, error) {
	return call[wire.ReportResponse](ctx, c, wire.PathReport, req)
}

// IdentityChallenge asks for a nonce for the device key to sign.
func (c *Client) IdentityChallenge(ctx context.Context, req wire.IdentityChallengeRequest) (wire.IdentityChallengeResponse, error) {
	return call[wire.IdentityChallengeResponse](ctx, c, wire.PathIdentityChallenge, req)
}

// Refresh asks for the next secret ID of an authenticated device.
func (c *Client) Refresh(ctx context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error) {
	return call[wire.EnrollResponse](ctx, c, wire.PathRefresh, req)
}

// Rejoin asks for a new secret ID on the strength of the device key alone.
func (c *Client) Rejoin(ctx context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error) {
	return call[wire.EnrollResponse](ctx, c, wire.PathRejoin, req)
}

// call posts req to path and decodes the answer.
func call[Resp any](ctx context.Context, c *Client, path string, req any) (Resp, error) {
	var resp Resp
	err := c.post(ctx, path, req, &resp)
	return resp, err
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		// Never include the request: it carries a token.
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			return fmt.Errorf("POST %s: %w: %w", path, ErrUntrustedCertificate, scrub(err))
		}
		return fmt.Errorf("POST %s: %w", path, scrub(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("POST %s: read response: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
		var eb wire.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			e.Err = eb.Error
		} else {
			e.Err = wire.Error{Code: wire.CodeInternal, Message: http.StatusText(resp.StatusCode)}
			if resp.StatusCode == http.StatusTooManyRequests {
				e.Err.Code = wire.CodeRateLimited
			}
		}
		if e.RetryAfter == 0 && e.Err.RetryAfterSeconds > 0 {
			e.RetryAfter = time.Duration(e.Err.RetryAfterSeconds) * time.Second
		}
		// A slot of the device's own, to the millisecond, is kept within
		// the hour (the body is the server's, yet bounded like any input).
		if ms := e.Err.RetryAfterMillis; ms > 0 && ms <= maxScheduled {
			e.RetryAfter, e.Scheduled = time.Duration(ms)*time.Millisecond, true
		}
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("POST %s: malformed response: %w", path, err)
	}
	return nil
}

// scrub drops the URL wrapper of a transport error; the URL is harmless but
// the shape keeps error messages short and free of request data.
func scrub(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap()
	}
	return err
}

// retryAfter parses a Retry-After header in seconds or as an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), time.Hour)
	}
	return 0
}
