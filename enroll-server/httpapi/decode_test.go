package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/edge-enroll/enroll/pkg/wire"
)

func decodeBody(contentType string, body []byte) (wire.EnrollRequest, error) {
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest(http.MethodPost, wire.PathEnroll, bytes.NewReader(body))
	c.Request.Header.Set("Content-Type", contentType)
	var req wire.EnrollRequest
	err := decode(c, &req)
	return req, err
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		ct   string
		body string
		code wire.Code
	}{
		{"valid", "application/json; charset=utf-8", `{"fleet":"acme","device_id":"d1"}`, ""},
		{"unknown field", "application/json", `{"fleet":"acme","extra":1}`, wire.CodeInvalidRequest},
		{"two objects", "application/json", `{"fleet":"a"}{"fleet":"b"}`, wire.CodeInvalidRequest},
		{"wrong type", "application/json", `{"fleet":42}`, wire.CodeInvalidRequest},
		{"duplicate member", "application/json", `{"fleet":"acme","fleet":"other"}`, wire.CodeInvalidRequest},
		{"member in another case", "application/json", `{"FLEET":"acme"}`, wire.CodeInvalidRequest},
		{"not an object", "application/json", `["acme"]`, wire.CodeInvalidRequest},
		{"empty", "application/json", ``, wire.CodeInvalidRequest},
		{"too large", "application/json", `{"fleet":"` + strings.Repeat("a", wire.MaxBodyBytes) + `"}`, wire.CodeBodyTooLarge},
		{"form", "application/x-www-form-urlencoded", `fleet=acme`, wire.CodeUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeBody(tt.ct, []byte(tt.body))
			var we *wire.Error
			switch {
			case tt.code == "" && err != nil:
				t.Fatalf("decode: %v", err)
			case tt.code != "" && (!errors.As(err, &we) || we.Code != tt.code):
				t.Fatalf("decode error %v, want code %s", err, tt.code)
			}
		})
	}
}

// A refusal names the field and what is wrong with it.
func TestDecodeSaysWhatIsWrong(t *testing.T) {
	for body, want := range map[string]string{
		`{"fleet":42}`: `field "fleet" has the wrong type`,
		`{"fleet":"acme","attestation":{"quote":"%%%"}}`: `field "attestation/quote" is not valid base64`,
		`{"fleet":"acme","attestation":{"event_log":7}}`: `field "attestation/event_log" has the wrong type`,
	} {
		_, err := decodeBody("application/json", []byte(body))
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeInvalidRequest || !strings.Contains(we.Message, want) {
			t.Errorf("%s: %v, want invalid_request saying %s", body, err, want)
		}
	}
}

// The decoder never panics, only ever answers with a *wire.Error, and never
// echoes the body back in its message.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"fleet":"acme","device_id":"d1","enrollment_token":"t","idempotency_key":"k","facts":{}}`))
	f.Add([]byte(`{"fleet":`))
	f.Add([]byte(`{"secret-marker-xyz":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeBody("application/json", body)
		if err == nil {
			if _, merr := json.Marshal(req); merr != nil {
				t.Fatalf("decoded request does not marshal: %v", merr)
			}
			return
		}
		var we *wire.Error
		if !errors.As(err, &we) {
			t.Fatalf("decode returned %T, want *wire.Error", err)
		}
		if len(body) >= 8 && strings.Contains(we.Message, string(body)) {
			t.Fatalf("error message echoes the body: %q", we.Message)
		}
	})
}

// Every request of the public API, decoded from hostile bytes and then
// validated as its endpoint does: no panic, and a refusal is always a
// *wire.Error that does not echo the body.
func FuzzPublicRequests(f *testing.F) {
	for _, s := range []string{
		`{"fleet":"acme","device_id":"d1","idempotency_key":"kkkkkkkkkkkkkkkk","token":"t","challenge_id":"c","sequence":1,"signature":"AAAA"}`,
		`{"fleet":"acme","device_id":"d1","enrollment_id":"e","token":"t","secret_id_accessor":"a"}`,
		`{"fleet":"acme","device_id":"d1","enrollment_id":"e","idempotency_key":"kkkkkkkkkkkkkkkk","problem":"wrapping_token_invalid"}`,
		`{"fleet":"acme","device_id":"d1","ek_public":"AAAA","ak_public":"AAAA"}`,
		`{"fleet":"acme","device_id":"d1","attestation":{"challenge_id":"c","secret":"AA==","quote":"AA==","signature":"AA=="}}`,
		`{"new_key":"MCowBQYDK2VwAyEA8ZgSR4cuOckiL5WK0ilxmI6TOP96mHoHrHm5KPSAX+4="}`,
	} {
		for kind := range uint8(7) {
			f.Add(kind, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		c.Request = httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		c.Request.Header.Set("Content-Type", "application/json")
		var err error
		switch kind % 7 {
		case 0:
			var r wire.EnrollRequest
			if err = decode(c, &r); err == nil && r.Attestation != nil {
				_ = r.Attestation.Validate()
			}
		case 1:
			var r wire.AckRequest
			err = decode(c, &r)
		case 2:
			var r wire.ReportRequest
			err = decode(c, &r)
		case 3:
			var r wire.ChallengeRequest
			if err = decode(c, &r); err == nil {
				_ = r.Validate()
			}
		case 4:
			var r wire.AdmitRequest
			err = decode(c, &r)
		case 5:
			var r wire.IdentityChallengeRequest
			err = decode(c, &r)
		case 6:
			var r wire.IdentityRequest
			if err = decode(c, &r); err == nil {
				_ = r.Validate("refresh")
				_ = r.Validate("rejoin")
			}
		}
		if err == nil {
			return
		}
		var we *wire.Error
		if !errors.As(err, &we) {
			t.Fatalf("decode returned %T, want *wire.Error", err)
		}
		if len(body) >= 8 && strings.Contains(we.Message, string(body)) {
			t.Fatalf("error message echoes the body: %q", we.Message)
		}
	})
}
