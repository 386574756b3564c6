package ekfetch

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MaxResponse caps what a manufacturer's service may send: a certificate
// is 1-2 KiB, in JSON or PEM a little more.
const MaxResponse = 32 << 10

// Timeout bounds one fetch; a device waits for its challenge meanwhile.
const Timeout = 10 * time.Second

// Source is one fleet's manufacturer service.
type Source struct {
	Format string // Intel or AMD
	Base   string // https URL the certificate's name is appended to
	// Client does the request; nil: a client with Timeout and the
	// system's roots.
	Client *http.Client
}

// NewSource checks a fleet's settings.
func NewSource(format, base string, client *http.Client) (*Source, error) {
	if base == "" {
		base = DefaultBase[format]
	}
	if _, ok := DefaultBase[format]; !ok {
		return nil, fmt.Errorf("unknown EK certificate URL format %q (want intel or amd)", format)
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("EK certificate base URL %q: want an https URL without query", base)
	}
	if client == nil {
		client = &http.Client{Timeout: Timeout}
	}
	// The URL is the manufacturer's: never follow it elsewhere.
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Source{Format: format, Base: base, Client: &c}, nil
}

// Fetch downloads the certificate the manufacturer publishes for pub and
// returns it as DER. It is not verified here: the caller verifies it like
// any other EK certificate.
func (s *Source) Fetch(ctx context.Context, pub crypto.PublicKey) ([]byte, error) {
	u, err := URL(s.Format, s.Base, pub)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	rsp, err := s.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch EK certificate: %w", err)
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch EK certificate: %s answered %s", req.URL.Host, rsp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(rsp.Body, MaxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("fetch EK certificate: %w", err)
	}
	if len(body) > MaxResponse {
		return nil, fmt.Errorf("fetch EK certificate: response larger than %d bytes", MaxResponse)
	}
	return Decode(body)
}

// Decode reads a manufacturer's answer: Intel's JSON document (the
// certificate in base64url, its padding possibly URL-escaped), PEM, or
// DER as AMD serves it. What it returns at least starts like DER.
func Decode(body []byte) ([]byte, error) {
	der, err := decode(body)
	if err != nil {
		return nil, err
	}
	if len(der) < 2 || der[0] != 0x30 {
		return nil, errors.New("EK certificate service: answer holds no DER certificate")
	}
	return der, nil
}

func decode(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		var doc struct {
			Certificate string `json:"certificate"`
		}
		if err := json.Unmarshal(trimmed, &doc); err != nil || doc.Certificate == "" {
			return nil, errors.New("EK certificate service: JSON answer without a certificate")
		}
		s, err := url.QueryUnescape(doc.Certificate)
		if err != nil {
			return nil, fmt.Errorf("EK certificate service: %w", err)
		}
		der, err := base64.URLEncoding.DecodeString(s)
		if err != nil {
			der, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		}
		if err != nil {
			return nil, fmt.Errorf("EK certificate service: certificate is not base64url: %w", err)
		}
		return der, nil
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN")):
		b, _ := pem.Decode(trimmed)
		if b == nil || b.Type != "CERTIFICATE" {
			return nil, errors.New("EK certificate service: PEM answer without a certificate")
		}
		return b.Bytes, nil
	case len(body) > 0 && body[0] == 0x30:
		return body, nil
	}
	return nil, errors.New("EK certificate service: answer is neither JSON, PEM nor DER")
}
