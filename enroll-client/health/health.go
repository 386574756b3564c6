// Package health decides whether enroll-client is ready to serve its
// workloads, for the diagnostics listener (/readyz) and for
// `enroll-client status`, so that both always give the same answer.
//
// Ready means: the device holds a Vault token that has not expired, and
// it is neither refused, quarantined nor locked out. Every reason is a
// phase or an error code: never a secret, an accessor or a server's text.
package health

import (
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// NotReady returns why the device whose published status is s is not
// ready at now, or "" when it is.
func NotReady(s lifecycle.Status, now time.Time) string {
	switch {
	case s.Phase == "":
		return "starting: no status published yet"
	case !s.DaemonStopped.IsZero():
		return "daemon stopped"
	case s.Phase == lifecycle.PhaseRejected:
		switch s.Refused {
		case string(wire.CodeClonedState), string(wire.CodeDeviceQuarantined):
			return "quarantined: " + s.Refused
		case "":
			return "refused: see enroll-client status"
		}
		return "refused: " + s.Refused
	case s.Phase == lifecycle.PhasePending:
		return "not enrolled yet: waiting for approval"
	case s.TokenExpiresAt.IsZero():
		return "not enrolled yet: " + string(s.Phase)
	case s.Phase == lifecycle.PhaseRejoining:
		// Rejoining means the token was refused or is dead.
		return "no working token: rejoining"
	case !now.Before(s.TokenExpiresAt):
		return "token expired"
	}
	return ""
}
