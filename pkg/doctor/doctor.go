// Package doctor is the report both daemons' `doctor` commands print: one
// line per check, ok, warn or fail, with what to do about anything that is
// not ok, and an exit code scripts can act on.
package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Status is a check's outcome.
type Status string

// Outcomes, from best to worst.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is one check's line.
type Result struct {
	Status Status `json:"status"`
	Check  string `json:"check"`
	Detail string `json:"detail"`
	// Fix says what to do; empty when the check passed.
	Fix string `json:"fix,omitempty"`
}

// Passed is a check that passed.
func Passed(check, format string, args ...any) Result {
	return Result{Status: OK, Check: check, Detail: fmt.Sprintf(format, args...)}
}

// Warned is a check that passed with a concern.
func Warned(check, detail, fix string) Result {
	return Result{Status: Warn, Check: check, Detail: detail, Fix: fix}
}

// Failed is a check that failed.
func Failed(check, detail, fix string) Result {
	return Result{Status: Fail, Check: check, Detail: detail, Fix: fix}
}

// Report collects results in the order the checks ran.
type Report struct {
	Results []Result `json:"checks"`
}

// Add appends results.
func (r *Report) Add(res ...Result) { r.Results = append(r.Results, res...) }

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	for _, x := range r.Results {
		if x.Status == Fail {
			return true
		}
	}
	return false
}

// ExitCode is 1 when any check failed, else 0 (warnings included).
func (r *Report) ExitCode() int {
	if r.Failed() {
		return 1
	}
	return 0
}

// Write prints the report: one line per check in the form
// "ok|warn|fail  check: detail — fix", or one JSON document.
func (r *Report) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	for _, x := range r.Results {
		if _, err := fmt.Fprintln(w, x.String()); err != nil {
			return err
		}
	}
	return nil
}

// String is the check's one line; multi-line errors are joined with "; ".
func (x Result) String() string {
	s := fmt.Sprintf("%-4s  %s: %s", x.Status, x.Check, oneLine(x.Detail))
	if x.Fix != "" && x.Status != OK {
		s += " — " + oneLine(x.Fix)
	}
	return s
}

// oneLine keeps a report line one line long whatever an error holds.
func oneLine(s string) string {
	parts := strings.Split(s, "\n")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.TrimSuffix(p, ":"))
		}
	}
	return strings.Join(out, "; ")
}
