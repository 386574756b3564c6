package doctor

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	var r Report
	r.Add(Passed("config", "%s is valid", "/etc/x.yaml"), Warned("tls", "expires in 3 days", "renew it"))
	if r.ExitCode() != 0 {
		t.Fatal("warnings alone must not fail")
	}
	r.Add(Failed("vault", "connection refused", "check vault.address"))
	if r.ExitCode() != 1 {
		t.Fatal("a failed check must fail the report")
	}
	var text bytes.Buffer
	if err := r.Write(&text, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	if len(lines) != 3 || lines[0] != "ok    config: /etc/x.yaml is valid" || lines[1] != "warn  tls: expires in 3 days — renew it" ||
		lines[2] != "fail  vault: connection refused — check vault.address" {
		t.Fatalf("text report:\n%s", text.String())
	}
	var js bytes.Buffer
	if err := r.Write(&js, true); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != 3 || back.Results[2].Status != Fail {
		t.Fatalf("json report %s: %v", js.String(), err)
	}
}
