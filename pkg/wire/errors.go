package wire

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable, machine-readable error code. The set is closed: every
// code is listed in codeStatus.
type Code string

// Error codes returned by enroll-server.
const (
	CodeInvalidRequest        Code = "invalid_request"
	CodeBodyTooLarge          Code = "body_too_large"
	CodeUnsupportedMediaType  Code = "unsupported_media_type"
	CodeUnknownFleet          Code = "unknown_fleet"
	CodeEnrollmentTokenBad    Code = "enrollment_token_invalid"
	CodeEnrollmentTokenReused Code = "enrollment_token_reused"
	CodeIdempotencyConflict   Code = "idempotency_conflict"
	CodeEnrollmentInProgress  Code = "enrollment_in_progress"
	CodeEnrollmentNotFound    Code = "enrollment_not_found"
	CodeProofInvalid          Code = "proof_invalid"
	CodeDeviceQuarantined     Code = "device_quarantined"
	CodeRejected              Code = "rejected"
	CodeUnauthenticated       Code = "unauthenticated"
	CodeInvalidToken          Code = "invalid_token"
	CodeForbidden             Code = "forbidden"
	CodeNotFound              Code = "not_found"
	CodeRateLimited           Code = "rate_limited"
	CodeEnrollmentClosed      Code = "enrollment_closed"
	CodeUnavailable           Code = "unavailable"
	CodeAttestationDisabled   Code = "attestation_disabled"
	CodeAttestationRequired   Code = "attestation_required"
	CodeAttestationFailed     Code = "attestation_failed"
	CodeChallengeInvalid      Code = "challenge_invalid"
	CodeHardwareMismatch      Code = "hardware_mismatch"
	CodeEventLogMismatch      Code = "event_log_mismatch"
	CodeBootPolicyViolation   Code = "boot_policy_violation"
	CodeClonedState           Code = "cloned_state"
	CodeUnknownDevice         Code = "unknown_device"
	CodeGenerationCurrent     Code = "generation_current"
	CodeGenerationInUse       Code = "generation_in_use"
	CodeGenerationInGrace     Code = "generation_in_grace"
	CodeInternal              Code = "internal"
)

var codeStatus = map[Code]int{
	CodeInvalidRequest:        http.StatusBadRequest,
	CodeBodyTooLarge:          http.StatusRequestEntityTooLarge,
	CodeUnsupportedMediaType:  http.StatusUnsupportedMediaType,
	CodeUnknownFleet:          http.StatusNotFound,
	CodeEnrollmentTokenBad:    http.StatusUnauthorized,
	CodeEnrollmentTokenReused: http.StatusUnauthorized,
	CodeIdempotencyConflict:   http.StatusConflict,
	CodeEnrollmentInProgress:  http.StatusConflict,
	CodeEnrollmentNotFound:    http.StatusNotFound,
	CodeProofInvalid:          http.StatusForbidden,
	CodeDeviceQuarantined:     http.StatusForbidden,
	CodeRejected:              http.StatusForbidden,
	CodeUnauthenticated:       http.StatusUnauthorized,
	CodeInvalidToken:          http.StatusUnauthorized,
	CodeForbidden:             http.StatusForbidden,
	CodeNotFound:              http.StatusNotFound,
	CodeRateLimited:           http.StatusTooManyRequests,
	CodeEnrollmentClosed:      http.StatusForbidden,
	CodeUnavailable:           http.StatusServiceUnavailable,
	CodeAttestationDisabled:   http.StatusConflict,
	CodeAttestationRequired:   http.StatusForbidden,
	CodeAttestationFailed:     http.StatusForbidden,
	CodeChallengeInvalid:      http.StatusConflict,
	CodeHardwareMismatch:      http.StatusForbidden,
	CodeEventLogMismatch:      http.StatusForbidden,
	CodeBootPolicyViolation:   http.StatusForbidden,
	CodeClonedState:           http.StatusConflict,
	CodeUnknownDevice:         http.StatusNotFound,
	CodeGenerationCurrent:     http.StatusConflict,
	CodeGenerationInUse:       http.StatusConflict,
	CodeGenerationInGrace:     http.StatusConflict,
	CodeInternal:              http.StatusInternalServerError,
}

// Status is the HTTP status a code is sent with. An unknown code is treated
// as an internal error.
func (c Code) Status() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Retryable reports whether a client may try the same step again later.
// Codes that are not retryable are permanent refusals: the client stops and
// records why, unless it can fix the cause itself (for example by obtaining
// a fresh enrollment token).
func (c Code) Retryable() bool {
	switch c {
	case CodeEnrollmentInProgress, CodeRateLimited, CodeUnavailable, CodeInternal, CodeChallengeInvalid:
		return true
	}
	return false
}

// Error is the one error shape enroll-server sends. Message is safe to show
// to the caller; internal details are logged by the server, never sent.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// RetryAfterSeconds mirrors the Retry-After header when one is sent.
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
	// RetryAfterMillis, when set, is a return time of the caller's own,
	// to the millisecond: a server that sheds a crowd hands each device
	// its own slot, spaced at the pace it gets devices through. A client
	// comes back then, without spreading the time further as it would a
	// Retry-After shared by many; RetryAfterSeconds is the same time
	// rounded up, for clients that know only the header.
	RetryAfterMillis int `json:"retry_after_ms,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf builds an *Error with a formatted, caller-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorBody is the JSON document of every error response.
type ErrorBody struct {
	Error Error `json:"error"`
}

// CodeOf returns the code of the *Error in err's chain, or "" when there is
// none.
func CodeOf(err error) Code {
	var we *Error
	if errors.As(err, &we) {
		return we.Code
	}
	return ""
}
