package httpapi

import (
	"bytes"
	"encoding/json"
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
func decode(c *gin.Context, v any) error {
	ct := c.GetHeader("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return wire.Errorf(wire.CodeUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, wire.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return wire.Errorf(wire.CodeBodyTooLarge, "request body is larger than %d bytes", wire.MaxBodyBytes)
		}
		return wire.Errorf(wire.CodeInvalidRequest, "could not read the request body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return wire.Errorf(wire.CodeInvalidRequest, "malformed JSON: %s", describe(err))
	}
	if dec.More() {
		return wire.Errorf(wire.CodeInvalidRequest, "malformed JSON: data after the object")
	}
	return nil
}

// describe turns a decoding error into a message that names the problem
// without echoing the body.
func describe(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "syntax error at byte " + strconv.FormatInt(syn.Offset, 10)
	case errors.As(err, &typ) && typ.Field == "":
		return "the body must be a JSON object"
	case errors.As(err, &typ):
		return "field " + typ.Field + " has the wrong type"
	case errors.Is(err, io.EOF):
		return "empty body"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "invalid document"
}
