package tpm

import (
	"encoding/binary"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// Warning response codes after which the TPM asks for the very same
// command again (TPM 2.0 Part 2, 6.6.3).
const (
	rcYielded = 0x908
	rcTesting = 0x90A
	rcRetry   = 0x922
)

// retrying resends a command the TPM answered with TPM_RC_RETRY,
// TPM_RC_YIELDED or TPM_RC_TESTING, with a short growing pause, a bounded
// number of times.
type retrying struct {
	transport.TPMCloser
	sleep    func(time.Duration)
	attempts int
}

func withRetry(t transport.TPMCloser) transport.TPMCloser {
	return &retrying{TPMCloser: t, sleep: time.Sleep, attempts: 20}
}

func (r *retrying) Send(cmd []byte) ([]byte, error) {
	pause := 5 * time.Millisecond
	for i := 1; ; i++ {
		rsp, err := r.TPMCloser.Send(cmd)
		if err != nil || len(rsp) < 10 || i >= r.attempts {
			return rsp, err
		}
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case rcRetry, rcYielded, rcTesting:
			r.sleep(pause)
			pause = min(2*pause, 500*time.Millisecond)
		default:
			return rsp, nil
		}
	}
}
