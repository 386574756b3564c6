package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json/jsontext"
	json "encoding/json/v2"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// decode reads one JSON object into v: the body is capped at
// wire.MaxBodyBytes, unknown fields and trailing data are refused.
func decode(c *gin.Context, v any) error { return decodeLimit(c, v, wire.MaxBodyBytes) }

// decodeLimit is decode with another cap on the body, for the requests
// that may carry an event log.
func decodeLimit(c *gin.Context, v any, limit int64) error {
	ct := c.GetHeader("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return wire.Errorf(wire.CodeUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return wire.Errorf(wire.CodeBodyTooLarge, "request body is larger than %d bytes", limit)
		}
		return wire.Errorf(wire.CodeInvalidRequest, "could not read the request body")
	}
	// Strictly: unknown members, duplicate members and members spelled in
	// another case are refused, as is anything after the object.
	if err := json.Unmarshal(body, v, json.RejectUnknownMembers(true)); err != nil {
		return wire.Errorf(wire.CodeInvalidRequest, "malformed JSON: %s", describe(body, err))
	}
	return nil
}

// describe turns a decoding error into a message that names the problem
// (and the member, by its JSON pointer) without echoing the body.
func describe(body []byte, err error) string {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return "empty body"
	case errors.As(err, &syn) && errors.Is(syn.Err, jsontext.ErrDuplicateName):
		return "duplicate member " + member(syn.JSONPointer)
	case errors.As(err, &syn):
		return "syntax error at byte " + strconv.FormatInt(syn.ByteOffset, 10)
	case errors.As(err, &sem) && errors.Is(sem.Err, json.ErrUnknownName):
		return "unknown field " + member(sem.JSONPointer)
	case errors.As(err, &sem) && sem.JSONPointer == "":
		return "the body must be a JSON object"
	case errors.As(err, &sem) && errors.As(sem.Err, new(base64.CorruptInputError)):
		return "field " + member(sem.JSONPointer) + " is not valid base64"
	case errors.As(err, &sem):
		return "field " + member(sem.JSONPointer) + " has the wrong type"
	}
	return "invalid document"
}

// member names a JSON member by its pointer, shortened.
func member(p jsontext.Pointer) string {
	s := strings.TrimPrefix(string(p), "/")
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}
