package enrollment

import (
	"context"
	"errors"
	"log/slog"
	"slices"

	"github.com/edge-enroll/enroll/enroll-server/attest"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Measured boot: evidence may carry the device's TCG event log. Whenever
// it does, the log is replayed against the quoted PCRs (which the quote
// proved), and a log that does not replay is refused with an alert: it is
// not the boot the TPM measured. A fleet with a boot policy requires a
// log and judges the boot it shows, at every attested enrollment and at
// every refresh of a device bound to its TPM.

// quotedPCRs are the PCRs a fleet's challenges quote: its own and the
// boot PCRs an event log is replayed against.
func quotedPCRs(p TPMPolicy) []int {
	out := slices.Concat(p.PCRs, attest.BootPCRs)
	slices.Sort(out)
	return slices.Compact(out)
}

// checkBoot replays the evidence's event log, when sent, and judges it by
// the fleet's boot policy. ev's PCR values must have been verified against
// the quote already. The accepted boot is returned (nil without a log).
func (s *Service) checkBoot(ctx context.Context, log *slog.Logger, fleet Fleet, c inventory.Challenge, ev wire.Evidence) (*inventory.Boot, error) {
	policy := fleet.TPM.Boot
	if len(ev.EventLog) == 0 {
		if policy == nil {
			return nil, nil
		}
		return nil, s.bootRefused(ctx, log, c, inventory.AlertBootPolicyViolation, wire.CodeBootPolicyViolation,
			"the fleet has a boot policy and the device sent no event log")
	}
	quoted := make(map[int][]byte, len(ev.PCRs))
	for _, p := range ev.PCRs {
		quoted[p.Index] = p.Digest
	}
	boot, err := attest.CheckEventLog(ev.EventLog, quoted)
	var le *attest.LogError
	if errors.As(err, &le) {
		return nil, s.bootRefused(ctx, log, c, inventory.AlertEventLogMismatch, wire.CodeEventLogMismatch, le.Error())
	}
	if err != nil {
		return nil, err
	}
	rec := &inventory.Boot{Result: inventory.BootVerified, SecureBoot: boot.SecureBoot, PCR4: boot.PCR4, At: s.now().UTC()}
	if policy == nil {
		return rec, nil
	}
	var pe *attest.PolicyError
	if err := policy.Judge(boot); errors.As(err, &pe) {
		return nil, s.bootRefused(ctx, log, c, inventory.AlertBootPolicyViolation, wire.CodeBootPolicyViolation, pe.Error())
	} else if err != nil {
		return nil, err
	}
	rec.Result = inventory.BootPolicyPassed
	return rec, nil
}

// bootRefused raises the alert for a boot the server refuses (the TPM was
// proven: nobody raises these for free) and returns the refusal.
func (s *Service) bootRefused(ctx context.Context, log *slog.Logger, c inventory.Challenge, kind string, code wire.Code, detail string) error {
	log.Warn("measured boot refused", "security", true, "reason", detail, "ek_hash", short(c.EKHash))
	s.alerts.Raise(ctx, inventory.Alert{Time: s.now().UTC(), Kind: kind, Fleet: c.Fleet, DeviceID: c.DeviceID, Detail: detail})
	return fail(code, "%s", detail)
}
