package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// post sends a raw body to the server and returns the status and body.
func (e *env) post(path, body string) (int, string) {
	e.t.Helper()
	return e.postWith(path, "application/json", []byte(body))
}

func (e *env) postWith(path, contentType string, body []byte) (int, string) {
	e.t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: mustPool(e.t, e.caPEM)},
	}}
	resp, err := c.Post(e.serverURL+path, contentType, bytes.NewReader(body))
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func (e *env) get(path, vaultToken string) (int, string) {
	e.t.Helper()
	return e.adminCall(http.MethodGet, path, vaultToken, "")
}

// adminCall calls the admin API with a Vault token and an optional body.
func (e *env) adminCall(method, path, vaultToken, body string) (int, string) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.serverURL+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if vaultToken != "" {
		req.Header.Set("X-Vault-Token", vaultToken)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: mustPool(e.t, e.caPEM)}}}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func enrollBody(token, device, key string) string {
	return fmt.Sprintf(`{"fleet":"acme","device_id":%q,"enrollment_token":%q,"idempotency_key":%q,"facts":{"os":"linux"}}`,
		device, token, key)
}

func jsonField(t testing.TB, body, field string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("response is not JSON: %s", body)
	}
	s, _ := m[field].(string)
	return s
}

func errorCode(t testing.TB, body string) string {
	t.Helper()
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Message == "" {
		t.Fatalf("not an error document: %s", body)
	}
	return eb.Error.Code
}

// Metrics are served on metrics_listen only, never on the devices'
// listener.
func TestMetricsOffThePublicListener(t *testing.T) {
	e := newEnv(t)
	if status, _ := e.get("/metrics", ""); status != http.StatusNotFound {
		t.Fatalf("the devices' listener answers /metrics with %d", status)
	}
	if !strings.Contains(e.metrics(), "enroll_server_") {
		t.Fatal("metrics_listen serves no server metrics")
	}
}
