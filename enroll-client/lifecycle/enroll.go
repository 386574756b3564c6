package lifecycle

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// startEnrollment picks the idempotency key that every retry of this
// enrollment will carry, and saves it before anything goes on the wire.
//
// The device key is made here too, before the first request carries it:
// the enrollment registers it with the server, and from then on the key,
// not the fleet's bootstrap credential, is what the device proves.
func (m *Machine) startEnrollment(st *State) error {
	st.clearEnrollment()
	if _, err := m.ensureDeviceKey(st); err != nil {
		return err
	}
	st.Flow = FlowBootstrap
	if p := m.cfg.Preprovisioned; p != nil && st.Enrollments == 0 {
		return m.usePreprovisioned(st, p)
	}
	st.Phase = PhaseEnrolling
	st.IdempotencyKey = rand.Text()
	return m.save(st)
}

// usePreprovisioned takes an injected wrapped credential as if the server
// had just answered with it; it is validated exactly the same way.
func (m *Machine) usePreprovisioned(st *State, p *wire.EnrollResponse) error {
	m.cfg.Preprovisioned = nil           // single use, whatever happens next
	st.IdempotencyKey = p.IdempotencyKey // the device's proof for a report
	if err := m.acceptWrapped(st, *p); err != nil {
		return permanent("pre-provisioned credential: %v", err)
	}
	if m.cfg.OnPreprovisioned != nil {
		m.cfg.OnPreprovisioned()
	}
	m.log.Info("using a pre-provisioned credential", "enrollment_id", st.EnrollmentID, "wrapping_accessor", st.WrappingAccessor)
	return nil
}

// bootstrapToken logs in with the fleet's shared enrollment role. The token
// proves possession of the bootstrap credential and is good for one request.
// Only a device that never completed an enrollment does this.
func (m *Machine) bootstrapToken(ctx context.Context, st *State) (string, error) {
	b := m.cfg.Bundle
	if b.RoleID == "" {
		return "", permanent("the bundle holds no bootstrap credential and no pre-provisioned credential is left; re-provision the device")
	}
	a, err := m.cfg.Vault.Login(ctx, b.EnrollMount, b.RoleID, b.SecretID)
	if errors.Is(err, vault.ErrCredentialRefused) {
		return "", permanent("vault refused the fleet's bootstrap credential (generation %d): %v; "+
			"if that generation was retired, install the fleet's current bundle and restart enroll-client", b.Generation, err)
	}
	if err != nil {
		return "", err
	}
	st.BootstrapLogins++
	m.spareUntil = m.clock.Now().Add(a.TTL - spareTokenMargin)
	return a.Token, nil
}

// spareTokenMargin is how much life a kept enrollment token must have left
// to be sent again.
const spareTokenMargin = 15 * time.Second

// enrollmentToken returns the token a shed request left unused while it
// has time left, or a fresh one.
func (m *Machine) enrollmentToken(ctx context.Context, st *State) (string, error) {
	if t := m.spareToken; t != "" {
		m.spareToken = ""
		if m.clock.Now().Before(m.spareUntil) {
			return t, nil
		}
	}
	return m.bootstrapToken(ctx, st)
}

// enroll asks the server for the device's wrapped secret ID and saves it
// before using it.
func (m *Machine) enroll(ctx context.Context, st *State) (time.Duration, error) {
	ticket, err := m.admission(ctx)
	if err != nil {
		return 0, m.classifyServer(st, err)
	}
	ev, err := m.attest(ctx, ticket)
	if err != nil {
		return 0, m.classifyServer(st, err)
	}
	token, err := m.enrollmentToken(ctx, st)
	var perm *permanentError
	if errors.As(err, &perm) && ev != nil {
		// The bootstrap credential is gone (its generation was retired, or
		// the image carries none): a device bound to its TPM proves itself
		// with attestation alone.
		m.log.Warn("no bootstrap credential; enrolling with TPM attestation alone", "reason", perm.reason)
		token, err = "", nil
	}
	if err != nil {
		return 0, err
	}
	key, err := m.deviceKey(st, false)
	if err != nil {
		return 0, err
	}
	resp, err := m.cfg.Server.Enroll(ctx, wire.EnrollRequest{
		Fleet: m.cfg.Bundle.Fleet, DeviceID: m.cfg.DeviceID, EnrollmentToken: token,
		IdempotencyKey: st.IdempotencyKey, Facts: m.cfg.Facts, Attestation: ev, Ticket: ticket,
		DeviceKey: key.Public(),
	})
	var se *serverapi.Error
	if err != nil && (!errors.As(err, &se) || se.Err.Code != wire.CodeRateLimited) {
		m.ticket = "" // spent: the next attempt asks again
	}
	if errors.As(err, &se) && se.Err.Code == wire.CodeRateLimited && token != "" {
		// The server sheds load before it looks at the token, so the token
		// is unused: keep it for the next attempt rather than log in to
		// Vault again, which is what a crowd of retrying devices would
		// otherwise do to the very server the shedding protects.
		m.spareToken = token
	}
	if errors.As(err, &se) && se.Err.Code == wire.CodeAttestationRequired && m.noAttestation && m.cfg.Attestor != nil {
		// The fleet turned attestation on since it told this device it
		// did not use it: attest from now on, at the next attempt.
		m.noAttestation = false
		return 0, err
	}
	if err != nil {
		return 0, m.classifyServer(st, err)
	}
	switch resp.Status {
	case wire.StatusPending:
		wait := time.Duration(resp.RetryAfterSeconds) * time.Second
		if st.Phase != PhasePending || st.EnrollmentID != resp.EnrollmentID {
			// The enrollment ID is what an administrator approves: status
			// shows it, with the device key, to whoever vouches for the
			// device.
			st.Phase, st.EnrollmentID = PhasePending, resp.EnrollmentID
			if err := m.save(st); err != nil {
				return 0, err
			}
			m.log.Info("awaiting approval", "enrollment_id", resp.EnrollmentID, "retry_in", wait)
		}
		return m.backoff.Next(wait), nil
	case wire.StatusWrapped, wire.StatusEnrolled:
	default:
		return 0, fmt.Errorf("server answered with unknown status %q", resp.Status)
	}
	if err := m.acceptWrapped(st, resp); err != nil {
		return 0, err
	}
	m.log.Info("received wrapped secret ID", "enrollment_id", st.EnrollmentID, "wrapping_accessor", st.WrappingAccessor)
	return 0, nil
}

// ticketLife is how long the device uses an admission ticket: less than
// the server's 30 s, whatever the clocks say.
const ticketLife = 20 * time.Second

// admission asks the server to let the device in before it touches Vault:
// in a crowd, the server sheds devices with 429 and Retry-After here, so
// Vault never sees their logins. A ticket is kept across a shed enrollment
// request while it lasts.
func (m *Machine) admission(ctx context.Context) (string, error) {
	if m.noAdmit {
		return "", nil
	}
	if m.ticket != "" && m.clock.Now().Before(m.ticketUntil) {
		return m.ticket, nil
	}
	resp, err := m.cfg.Server.Admit(ctx, wire.AdmitRequest{Fleet: m.cfg.Bundle.Fleet, DeviceID: m.cfg.DeviceID})
	var se *serverapi.Error
	if errors.As(err, &se) && se.Err.Code == wire.CodeNotFound {
		m.log.Info("the server gives no admission tickets; enrolling without")
		m.noAdmit = true
		return "", nil
	}
	if err != nil {
		return "", err
	}
	m.ticket, m.ticketUntil = resp.Ticket, m.clock.Now().Add(ticketLife)
	return resp.Ticket, nil
}

// attest answers a fresh challenge from the server with the TPM; nil
// evidence when the device has no TPM or its fleet does not use one.
func (m *Machine) attest(ctx context.Context, ticket string) (*wire.Evidence, error) {
	if m.cfg.Attestor == nil || m.noAttestation {
		return nil, nil
	}
	if m.identity == nil {
		id, err := m.cfg.Attestor.Identity()
		if err != nil {
			return nil, err
		}
		m.identity = &id
	}
	req := *m.identity
	req.Fleet, req.DeviceID, req.Ticket = m.cfg.Bundle.Fleet, m.cfg.DeviceID, ticket
	ch, err := m.cfg.Server.Challenge(ctx, req)
	var se *serverapi.Error
	if errors.As(err, &se) && se.Err.Code == wire.CodeAttestationDisabled {
		m.log.Info("the fleet does not use TPM attestation; enrolling without it")
		m.noAttestation = true
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ev, err := m.cfg.Attestor.Answer(ch)
	if err != nil {
		return nil, err
	}
	m.log.Info("answered the server's TPM challenge")
	return &ev, nil
}

// acceptWrapped saves a wrapped credential before anything uses it.
func (m *Machine) acceptWrapped(st *State, resp wire.EnrollResponse) error {
	var missing []string
	for name, v := range map[string]string{"wrapping_token": resp.WrappingToken, "role_id": resp.RoleID, "enrollment_id": resp.EnrollmentID} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("the server's answer lacks %s", strings.Join(missing, ", "))
	}
	if resp.LoginMount != m.cfg.Bundle.DeviceMount {
		return fmt.Errorf("the server's answer names login mount %q, but the bundle's device mount is %q", resp.LoginMount, m.cfg.Bundle.DeviceMount)
	}
	st.Phase, st.Acknowledged = PhaseWrapped, false
	st.PendingSequence = resp.Sequence
	st.EnrollmentID, st.RoleID, st.LoginMount = resp.EnrollmentID, resp.RoleID, resp.LoginMount
	st.WrappingToken, st.WrappingAccessor = resp.WrappingToken, resp.WrappingAccessor
	st.CreationPath, st.WrapExpiresAt = resp.CreationPath, resp.WrapExpiresAt
	return m.save(st)
}

// classifyServer turns a server refusal into a retryable or a permanent
// error, adjusting the state where the device can fix the cause itself.
func (m *Machine) classifyServer(st *State, err error) error {
	var se *serverapi.Error
	if !errors.As(err, &se) {
		return err // network: retry
	}
	switch se.Err.Code {
	case wire.CodeEnrollmentTokenBad, wire.CodeEnrollmentTokenReused:
		// Each attempt logs in afresh; a refused token is retried with a
		// new one, under backoff.
		return err
	case wire.CodeIdempotencyConflict:
		// That enrollment is dead on the server's side: start a new one.
		st.Phase = PhaseUnenrolled
		return err
	}
	if se.Retryable() {
		return err
	}
	st.Refused = string(se.Err.Code)
	return permanent("enroll-server refused: %s: %s", se.Err.Code, se.Err.Message)
}

// unwrap validates the wrapping token, unwraps it and saves the secret ID.
// A token that is already used, expired or minted elsewhere is never used:
// the device reports it and stops.
func (m *Machine) unwrap(ctx context.Context, st *State) error {
	want := wire.SecretIDCreationPath(m.cfg.Bundle.DeviceMount, m.cfg.DeviceID)
	if st.CreationPath != want {
		return m.reportAndStop(ctx, st, wire.ProblemCreationPathMismatch,
			fmt.Sprintf("server named creation path %q, device expects %q", st.CreationPath, want))
	}
	wi, err := m.cfg.Vault.LookupWrapping(ctx, st.WrappingToken)
	if errors.Is(err, vault.ErrWrappingInvalid) {
		detail := "wrapping token was already unwrapped or never existed"
		if !st.WrapExpiresAt.IsZero() && m.clock.Now().After(st.WrapExpiresAt) {
			detail = "wrapping token expired before the device could unwrap it"
		}
		return m.askAgain(ctx, st, detail)
	}
	if err != nil {
		return err
	}
	if wi.CreationPath != want {
		return m.reportAndStop(ctx, st, wire.ProblemCreationPathMismatch,
			fmt.Sprintf("wrapping token was created at %q, device expects %q", wi.CreationPath, want))
	}
	sid, err := m.cfg.Vault.UnwrapSecretID(ctx, st.WrappingToken)
	if errors.Is(err, vault.ErrWrappingInvalid) {
		return m.askAgain(ctx, st, "wrapping token was unwrapped between lookup and unwrap")
	}
	if err != nil {
		return err
	}
	st.Phase = PhaseUnwrapped
	st.SecretID, st.SecretIDAccessor = sid.ID, sid.Accessor
	st.SecretIDExpiresAt, st.SecretIDIssuedAt = time.Time{}, m.clock.Now().UTC()
	if sid.TTL > 0 {
		st.SecretIDExpiresAt = st.SecretIDIssuedAt.Add(sid.TTL)
	}
	st.WrappingToken = ""
	if err := m.save(st); err != nil {
		return err
	}
	m.log.Info("unwrapped secret ID", "secret_id_accessor", sid.Accessor)
	return nil
}

// A request whose wrapping token is found dead asks again: at once up to
// askAgainAtOnce times, then after a backoff, since lost answers may come
// in a row on a flaky path (the server tells a lost credential from a used
// one, and alerts only on the latter). Past maxAskAgain dead tokens in a
// row the device reports them: that many is no accident.
const (
	askAgainAtOnce = 3
	maxAskAgain    = 20
)

// askAgain handles a wrapping token found dead: the device itself may have
// unwrapped it and lost the answer (a crash, a dropped answer), or it may
// have expired while the server was away — or someone else unwrapped it.
// The device sends its request again, with the same idempotency key and a
// fresh proof; the server tells the cases apart by whether the secret ID
// was ever used to log in, and answers with a new credential or a lockout
// (reissue.go on the server). A pre-provisioned credential has no request
// behind it: it is reported.
func (m *Machine) askAgain(ctx context.Context, st *State, detail string) error {
	phase := map[string]Phase{FlowBootstrap: PhaseEnrolling, "": PhaseEnrolling, FlowRefresh: PhaseRefreshing, FlowRejoin: PhaseRejoining}[st.Flow]
	canAsk := st.Flow != FlowBootstrap && st.Flow != "" || m.cfg.Bundle.RoleID != "" || m.cfg.Attestor != nil
	if !canAsk || st.AskedAgain >= maxAskAgain {
		return m.reportAndStop(ctx, st, wire.ProblemWrappingTokenInvalid, detail)
	}
	m.log.Warn("wrapping token is no longer valid; asking the server again", "detail", detail,
		"enrollment_id", st.EnrollmentID, "wrapping_accessor", st.WrappingAccessor, "asked_again", st.AskedAgain)
	st.AskedAgain++
	st.Phase, st.WrappingToken = phase, ""
	if err := m.save(st); err != nil {
		return err
	}
	if st.AskedAgain > askAgainAtOnce {
		return fmt.Errorf("wrapping token found dead %d times in a row; asking again after a backoff", st.AskedAgain)
	}
	return nil
}

// reportAndStop tells the server that the wrapped credential is suspect
// and stops permanently: someone else may hold the device's secret ID, so
// only an administrator may let it enroll again.
func (m *Machine) reportAndStop(ctx context.Context, st *State, problem, detail string) error {
	m.log.Error("refusing wrapped secret ID", "security", true, "problem", problem, "detail", detail,
		"enrollment_id", st.EnrollmentID, "wrapping_accessor", st.WrappingAccessor)
	// The proof is the request's idempotency key, which only this device
	// (or the orchestrator that injected its credential) ever held.
	_, err := m.cfg.Server.Report(ctx, wire.ReportRequest{
		Fleet: m.cfg.Bundle.Fleet, DeviceID: m.cfg.DeviceID, EnrollmentID: st.EnrollmentID,
		IdempotencyKey: st.IdempotencyKey, Problem: problem, Detail: detail,
	})
	var se *serverapi.Error
	if err != nil && (!errors.As(err, &se) || se.Retryable()) {
		return err // the report must get through: retry
	}
	if err != nil {
		m.log.Warn("server refused the report", "err", err)
	}
	st.WrappingToken = ""
	return permanent("%s: %s; the device is quarantined until an administrator re-admits it (enrollctl readmit)", problem, detail)
}
