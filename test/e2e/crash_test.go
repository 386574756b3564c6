package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// The real client is killed with SIGKILL right after each durable
// transition, then restarted. Every device ends authenticated with exactly
// one enrollment recorded and one live secret ID: no step burned a
// credential for nothing or enrolled twice.
func TestCrashAfterEveryTransition(t *testing.T) {
	e := newEnv(t)
	bin := clientBinary(t)
	const transitions = 5 // enrolling, wrapped, unwrapped, authenticated, acknowledged
	for n := 1; n <= transitions+1; n++ {
		d := e.deviceDir("crash-" + strconv.Itoa(n))
		err := runClient(t, bin, d, n)
		var exit *exec.ExitError
		if n <= transitions {
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("crash point %d: client exited with %v, want killed by SIGKILL", n, err)
			}
			if err := runClient(t, bin, d, 0); err != nil {
				t.Fatalf("crash point %d: restarted client: %v", n, err)
			}
		} else if err != nil {
			// One past the last transition: no crash. This proves the
			// crash points above cover every transition of an enrollment.
			t.Fatalf("with no crash point left the client failed: %v", err)
		}
		st, err := d.readState()
		if err != nil {
			t.Fatal(err)
		}
		if st.Phase != "authenticated" || !st.Acknowledged || st.Enrollments != 1 {
			t.Fatalf("crash point %d: phase %s acknowledged %v enrollments %d", n, st.Phase, st.Acknowledged, st.Enrollments)
		}
		if readToken(d.sinkPath) != st.Token {
			t.Fatalf("crash point %d: the sink does not hold the device's token", n)
		}
		if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 {
			t.Fatalf("crash point %d: %d live secret IDs in Vault, want 1", n, len(got))
		}
		e.keep(st.Token, st.SecretID)
	}
	devs, alerts := e.inventory()
	if len(alerts) != 0 {
		t.Fatalf("crashes raised alerts: %+v", alerts)
	}
	if len(devs) != transitions+1 {
		t.Fatalf("inventory has %d devices, want %d", len(devs), transitions+1)
	}
	for _, d := range devs {
		if d.State != "enrolled" || d.Enrollments != 1 {
			t.Errorf("device %s: state %s with %d enrollments, want enrolled once", d.ID, d.State, d.Enrollments)
		}
	}
}

// runClient runs `enroll-client run -once`, crashing after the crashAfter-th
// transition when it is positive.
func runClient(t *testing.T, bin string, d *deviceDir, crashAfter int) error {
	t.Helper()
	cmd := exec.Command(bin, "run", "-once", "-config", d.config)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + d.dir}
	if crashAfter > 0 {
		cmd.Env = append(cmd.Env, "ENROLL_CLIENT_TEST_CRASH_AFTER="+strconv.Itoa(crashAfter))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil && crashAfter == 0 {
		t.Logf("client output:\n%s", out.String())
	}
	return err
}
