package health

import (
	"fmt"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
)

// Exit codes of `enroll-client status`.
const (
	ExitReady      = 0 // the daemon runs and the device is ready
	ExitError      = 1 // the status could not be read (configuration, files)
	ExitNotRunning = 3 // no daemon holds the device's state
	ExitNotReady   = 4 // the daemon runs, the device is not ready (NotReady says why)
)

// Report is what `enroll-client status` shows: the published status, and
// whether a daemon is running to act on it.
type Report struct {
	lifecycle.Status
	// DaemonRunning: a process holds the device's state file.
	DaemonRunning bool `json:"daemon_running"`
	Ready         bool `json:"ready"`
	// NotReady says why the device is not ready (see NotReady).
	NotReady string `json:"not_ready,omitempty"`
	// NextRetryStale: the next retry is in the past and no daemon is
	// running to make it.
	NextRetryStale bool `json:"next_retry_stale,omitempty"`
}

// NewReport judges s, the status last published (or read from the
// state), with running telling whether a daemon holds the state now.
func NewReport(s lifecycle.Status, running bool, now time.Time) Report {
	r := Report{Status: s, DaemonRunning: running}
	if running {
		// A status a previous daemon left as it stopped is not this one's.
		r.DaemonStopped = time.Time{}
		if !s.DaemonStopped.IsZero() {
			r.Phase = ""
		}
		r.NotReady = NotReady(r.Status, now)
	} else {
		r.NotReady = "daemon not running"
		r.NextRetryStale = !s.NextRetry.IsZero() && s.NextRetry.Before(now)
	}
	r.Ready = r.NotReady == ""
	return r
}

// ExitCode is the status command's exit code for r.
func (r Report) ExitCode() int {
	switch {
	case !r.DaemonRunning:
		return ExitNotRunning
	case !r.Ready:
		return ExitNotReady
	}
	return ExitReady
}

// Text renders r for people.
func (r Report) Text() string {
	var b strings.Builder
	s := r.Status
	switch {
	case !r.DaemonRunning && !s.DaemonStopped.IsZero():
		fmt.Fprintf(&b, "%-22s %s\n", "daemon:", "NOT RUNNING (stopped "+s.DaemonStopped.Format(time.RFC3339)+")")
	case !r.DaemonRunning:
		fmt.Fprintf(&b, "%-22s %s\n", "daemon:", "NOT RUNNING (it did not stop cleanly, or never ran: what follows is what it last wrote)")
	default:
		fmt.Fprintf(&b, "%-22s %s\n", "daemon:", "running")
	}
	ready := "yes"
	if !r.Ready {
		ready = "no: " + r.NotReady
	}
	fmt.Fprintf(&b, "%-22s %s\n", "ready:", ready)
	s.DaemonStopped = time.Time{} // said above
	stale := r.NextRetryStale
	if stale {
		s.NextRetry = time.Time{}
	}
	if s.Phase == "" {
		s.Phase = "(starting: no status published yet)"
	}
	b.WriteString(s.Text())
	if stale {
		fmt.Fprintf(&b, "%-22s %s (stale: in the past, and no daemon is running to retry)\n", "next retry:", r.Status.NextRetry.Format(time.RFC3339))
	}
	if !r.DaemonRunning {
		b.WriteString("\nenroll-client is not running, so nothing above moves on and the device's token\n" +
			"is not renewed. Start it (enroll-client service start, or your service manager),\n" +
			"and see its log for why it stopped.\n")
	}
	return b.String()
}
