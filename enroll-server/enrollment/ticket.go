package enrollment

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// ticketTTL is how long an admission ticket lets a device in: long enough
// for a Vault login and a TPM challenge.
const ticketTTL = 30 * time.Second

// Admit lets a device in under its fleet's rate limit before it touches
// Vault, or sheds it with 429 and Retry-After. The ticket it returns
// spares the device's enrollment request a second count.
//
// Tickets manage load; they authorise nothing. A request without one (or
// with one another replica issued) goes through the same limits.
func (s *Service) Admit(ctx context.Context, req wire.AdmitRequest) (wire.AdmitResponse, error) {
	var errs []error
	if err := wire.ValidateFleet(req.Fleet); err != nil {
		errs = append(errs, err)
	}
	if err := wire.ValidateDeviceID(req.DeviceID); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return wire.AdmitResponse{}, fail(wire.CodeInvalidRequest, "%v", err)
	}
	g, ok := s.gates[req.Fleet]
	if !ok {
		return wire.AdmitResponse{}, fail(wire.CodeUnknownFleet, "fleet %q is not served here", req.Fleet)
	}
	now := s.now()
	exp := now.Add(ticketTTL).UTC()
	ticket := s.ticket(req.Fleet, req.DeviceID, exp)
	err := g.Admit(now, ticket, exp, sourceOf(ctx))
	outcome := "admitted"
	var we *wire.Error
	if errors.As(err, &we) {
		outcome = string(we.Code)
	}
	s.metrics.Admission(req.Fleet, outcome)
	if err != nil {
		return wire.AdmitResponse{}, err
	}
	return wire.AdmitResponse{Ticket: ticket, ExpiresAt: exp}, nil
}

func (s *Service) ticket(fleet, device string, exp time.Time) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(exp.Unix()))
	return base64.RawURLEncoding.EncodeToString(append(b, s.ticketMAC(fleet, device, b)...))
}

func (s *Service) ticketMAC(fleet, device string, exp []byte) []byte {
	m := hmac.New(sha256.New, s.ticketKey[:])
	m.Write(exp)
	m.Write([]byte(fleet + "\x00" + device))
	return m.Sum(nil)[:16]
}

// finish closes the session of a ticket the device is done with.
func (s *Service) finish(ticket, fleet, device string) {
	if g, ok := s.gates[fleet]; ok && s.admitted(ticket, fleet, device) {
		g.Done(s.now(), ticket)
	}
}

// admitted reports whether ticket is a live ticket this server issued for
// the device.
func (s *Service) admitted(ticket, fleet, device string) bool {
	if ticket == "" || len(ticket) > 64 {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(ticket)
	if err != nil || len(raw) != 8+16 {
		return false
	}
	if !hmac.Equal(raw[8:], s.ticketMAC(fleet, device, raw[:8])) {
		return false
	}
	return s.now().Unix() <= int64(binary.BigEndian.Uint64(raw[:8]))
}

type sourceKey struct{}

// WithSource records the network address a request came from, for the
// per-source bound on admissions.
func WithSource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, sourceKey{}, source)
}

func sourceOf(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// sessionTicket returns ticket when it is a live ticket this server issued
// for the device, and "" otherwise.
func (s *Service) sessionTicket(ticket, fleet, device string) string {
	if s.admitted(ticket, fleet, device) {
		return ticket
	}
	return ""
}

// permanentRefusal reports whether err refuses the device for good (so it
// will not retry under the same admission).
func permanentRefusal(err error) bool {
	var we *wire.Error
	return errors.As(err, &we) && !we.Code.Retryable()
}
