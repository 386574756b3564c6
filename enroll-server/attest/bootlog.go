package attest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	goattest "github.com/google/go-attestation/attest"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// BootPCRs are the PCRs the firmware measures the boot into (PC Client
// profile): every challenge quotes them, so that an event log sent with
// the quote can be replayed.
var BootPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7}

// Secure Boot states of a replayed log.
const (
	SecureBootEnabled  = "enabled"
	SecureBootDisabled = "disabled"
	// SecureBootUnknown: the log does not show the state (no PCR 7
	// events, or events go-attestation refuses to judge).
	SecureBootUnknown = "unknown"
)

// Event types whose digest is the hash of their own data: a separator,
// or an action string the firmware logs. In PCR 4 these alone are not
// boot applications.
const (
	evSeparator = 0x00000004
	evEFIAction = 0x80000007
)

// Boot is what a replayed event log says about a device's boot. Only
// events that replayed against quoted PCRs are in it.
type Boot struct {
	SecureBoot string
	// SecureBootWhy says why the state is unknown.
	SecureBootWhy string
	// PCR4 are the SHA-256 digests (hex) of the boot applications
	// measured into PCR 4, in boot order: every PCR 4 event but those
	// whose digest is the hash of their own data (separators, actions).
	PCR4 []string
}

// LogError refuses an event log that does not parse or does not replay
// against the quoted PCRs: its message is safe to send.
type LogError struct{ msg string }

func (e *LogError) Error() string { return e.msg }

// CheckEventLog parses a TCG event log with go-attestation and replays it
// against PCR values the caller has verified as quoted (SHA-256 bank).
// Every event of a quoted PCR must replay, and a quoted boot PCR that
// holds anything but its reset value must have events: a log stripped of
// them is no account of the boot.
func CheckEventLog(raw []byte, quoted map[int][]byte) (Boot, error) {
	if len(raw) == 0 || len(raw) > wire.MaxEventLog {
		return Boot{}, &LogError{msg: fmt.Sprintf("event log: empty or longer than %d bytes", wire.MaxEventLog)}
	}
	el, err := goattest.ParseEventLog(raw)
	if err != nil {
		return Boot{}, &LogError{msg: fmt.Sprintf("event log does not parse: %v", err)}
	}
	idx := make([]int, 0, len(quoted))
	for i := range quoted {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	pcrs := make([]goattest.PCR, 0, len(idx))
	for _, i := range idx {
		if len(quoted[i]) != 32 {
			return Boot{}, &LogError{msg: fmt.Sprintf("PCR %d is not a SHA-256 value", i)}
		}
		pcrs = append(pcrs, goattest.PCR{Index: i, Digest: quoted[i], DigestAlg: crypto.SHA256})
	}
	events, err := el.Verify(pcrs)
	if err != nil {
		var re goattest.ReplayError
		if errors.As(err, &re) {
			return Boot{}, &LogError{msg: fmt.Sprintf("event log does not replay to the quoted PCRs %v", re.InvalidPCRs)}
		}
		return Boot{}, &LogError{msg: fmt.Sprintf("event log does not replay to the quoted PCRs: %v", err)}
	}
	measured := map[int]bool{}
	for _, e := range events {
		measured[e.Index] = true
	}
	for _, i := range BootPCRs {
		v, ok := quoted[i]
		if ok && !measured[i] && !bytes.Equal(v, make([]byte, 32)) {
			return Boot{}, &LogError{msg: fmt.Sprintf("PCR %d holds a measurement the event log has no event for", i)}
		}
	}
	return bootOf(events), nil
}

// bootOf reads the boot applications and Secure Boot state off verified
// events.
func bootOf(events []goattest.Event) Boot {
	var b Boot
	for _, e := range events {
		// An event's type and data are not what replay binds, only its
		// digest: a device could log a boot loader's image digest under
		// any type. So every PCR 4 digest counts as a boot application,
		// except one that is provably the hash of the event's own data.
		if e.Index == 4 && !selfDescribing(e) {
			b.PCR4 = append(b.PCR4, hex.EncodeToString(e.Digest))
		}
	}
	sb, err := goattest.ParseSecurebootState(events)
	switch {
	case !slices.ContainsFunc(events, func(e goattest.Event) bool { return e.Index == 7 }):
		// Nothing measured the Secure Boot variables: not "disabled".
		b.SecureBoot, b.SecureBootWhy = SecureBootUnknown, "the event log has no PCR 7 events"
	case err != nil:
		b.SecureBoot, b.SecureBootWhy = SecureBootUnknown, err.Error()
	case sb.Enabled:
		b.SecureBoot = SecureBootEnabled
	default:
		b.SecureBoot = SecureBootDisabled
	}
	return b
}

// selfDescribing reports whether e is a separator or an action whose
// digest is the SHA-256 of its logged data: it measured nothing but that.
func selfDescribing(e goattest.Event) bool {
	t := uint32(e.Type)
	if t != evSeparator && t != evEFIAction {
		return false
	}
	sum := sha256.Sum256(e.Data)
	return bytes.Equal(e.Digest, sum[:])
}
