package enrollctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// printJSON writes v indented.
func printJSON(env Env, v any) error {
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// deviceAction: enrollctl approve|reject|revoke|readmit -fleet F -device D [-reason R]
func deviceAction(action string) func(context.Context, []string, Env) error {
	return func(ctx context.Context, args []string, env Env) error {
		fs := flag.NewFlagSet(action, flag.ContinueOnError)
		fleet := fs.String("fleet", "", "fleet (required)")
		device := fs.String("device", "", "device ID (required)")
		reason := fs.String("reason", "", "why (shown to the device and in the audit log)")
		enrollment := fs.String("enrollment", "", "approve: the held request's enrollment ID, for a device that is already enrolled")
		preauthorize := preauthorizeFlag(fs, action)
		sf := addServerFlags(fs)
		if err := parse(fs, args, env); err != nil {
			return err
		}
		if *fleet == "" || *device == "" {
			return fmt.Errorf("-fleet and -device are required")
		}
		var d wire.Device
		path := wire.AdminDevicePath(*fleet, *device, action)
		if err := sf.call(ctx, env, http.MethodPost, path, nil, wire.Reason{Reason: *reason, Enrollment: *enrollment, Preauthorize: *preauthorize}, &d); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s %s/%s: done; the device is %s", action, d.Fleet, d.ID, orNone(d.State))
		if d.HeldEnrollment != "" {
			fmt.Fprintf(env.Stdout, ", held request %s", d.HeldEnrollment)
		}
		fmt.Fprintln(env.Stdout)
		return nil
	}
}

func preauthorize(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("preauthorize", flag.ContinueOnError)
	fleet := fs.String("fleet", "", "fleet (required)")
	sf := addServerFlags(fs)
	if err := parseWithArgs(fs, " DEVICE_ID...", args, env); err != nil {
		return err
	}
	if *fleet == "" || fs.NArg() == 0 {
		return errors.New("usage: enrollctl preauthorize -fleet F DEVICE_ID (one or more)")
	}
	var out map[string]any
	if err := sf.call(ctx, env, http.MethodPost, wire.AdminFleetPath(*fleet, "preauthorize"), nil, wire.DeviceIDs{DeviceIDs: fs.Args()}, &out); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "pre-authorised %d devices in fleet %s\n", fs.NArg(), *fleet)
	return nil
}

func generations(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("generations", flag.ContinueOnError)
	fleet := fs.String("fleet", "", "fleet (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	sf := addServerFlags(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	var g wire.Generations
	if err := sf.call(ctx, env, http.MethodGet, wire.AdminFleetPath(*fleet, "generations"), nil, nil, &g); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, g)
	}
	fmt.Fprintf(env.Stdout, "%-4s %-8s %-8s %-8s %-10s %-9s %-8s %s\n", "GEN", "STATE", "CURRENT", "DEVICES", "DEPENDENTS", "ATTEMPTS", "LIVE IDS", "LAST ATTEMPT")
	for _, x := range g.Generations {
		last := "-"
		if !x.LastAttempt.IsZero() {
			last = x.LastAttempt.Format("2006-01-02T15:04:05Z")
		}
		fmt.Fprintf(env.Stdout, "%-4d %-8s %-8v %-8d %-10d %-9d %-8d %s\n", x.N, x.State, x.Current, x.Devices, x.Dependents, x.Attempts, x.LiveSecretIDs, last)
	}
	return nil
}

// rotate starts a new generation and writes a bundle for new images.
func rotate(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("rotate", flag.ContinueOnError)
	fleet := fs.String("fleet", "", "fleet (required)")
	template := fs.String("bundle", "", "current bundle to copy addresses and CAs from (required)")
	out := fs.String("out", "", "new bundle, written 0600 (required)")
	sf := addServerFlags(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if *fleet == "" || *template == "" || *out == "" {
		return fmt.Errorf("-fleet, -bundle and -out are required")
	}
	f, err := os.Open(*template)
	if err != nil {
		return err
	}
	b, err := bundle.Parse(f)
	f.Close()
	if err != nil {
		return err
	}
	var r wire.Rotated
	if err := sf.call(ctx, env, http.MethodPost, wire.AdminFleetPath(*fleet, "rotate"), nil, nil, &r); err != nil {
		return err
	}
	b.RoleID, b.SecretID, b.Generation = r.RoleID, r.SecretID, r.Generation
	data, err := b.Marshal()
	if err != nil {
		return err
	}
	if err := writeOwnerOnly(*out, data); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "fleet %s: generation %d started; new bundle %s (secret ID accessor %s)\n", *fleet, r.Generation, *out, r.SecretIDAccessor)
	fmt.Fprintln(env.Stdout, "earlier generations stay valid until you retire them: enrollctl retire -fleet", *fleet, "-generation N")
	return nil
}

// endGeneration: enrollctl retire|revoke-generation -fleet F -generation N
func endGeneration(end string) func(context.Context, []string, Env) error {
	return func(ctx context.Context, args []string, env Env) error {
		fs := flag.NewFlagSet(map[string]string{"retire": "retire", "revoke": "revoke-generation"}[end], flag.ContinueOnError)
		fleet := fs.String("fleet", "", "fleet (required)")
		n := fs.Int("generation", 0, "generation to end (required)")
		force := fs.Bool("force", false, "retire even within the rotation grace period or while devices still depend on the generation (audited as forced)")
		sf := addServerFlags(fs)
		if err := parse(fs, args, env); err != nil {
			return err
		}
		if *fleet == "" || *n < 1 {
			return fmt.Errorf("-fleet and -generation are required")
		}
		var r wire.GenerationEnded
		path := wire.AdminGenerationPath(*fleet, *n, end)
		var q url.Values
		if *force {
			q = url.Values{"force": {"true"}}
		}
		if err := sf.call(ctx, env, http.MethodPost, path, q, nil, &r); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "fleet %s: generation %d %s, %d enrollment secret IDs destroyed\n", *fleet, r.Generation, r.State, r.DestroyedSecretIDs)
		fmt.Fprintf(env.Stdout, "grace: every server replica refuses its enrollment tokens within %ds; enrolled devices with a device key are unaffected\n", r.GraceSeconds)
		if r.Dependents > 0 {
			fmt.Fprintf(env.Stdout, "warning: %d devices without a device key depended on it and can no longer re-enroll on their own\n", r.Dependents)
		}
		return nil
	}
}

func alerts(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("alerts", flag.ContinueOnError)
	sf := addServerFlags(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	var out map[string]any
	if err := sf.call(ctx, env, http.MethodGet, wire.PathAdminAlerts, nil, nil, &out); err != nil {
		return err
	}
	return printJSON(env, out)
}

func auditCmd(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "export") {
		return fmt.Errorf("usage: enrollctl audit verify|export")
	}
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	sf := addServerFlags(fs)
	head := fs.String("head", "", "verify: a head (SEQ:HASH) printed by an earlier verify; records dropped since are named")
	if err := parse(fs, args[1:], env); err != nil {
		return err
	}
	if args[0] == "export" {
		return sf.call(ctx, env, http.MethodGet, wire.PathAdminAudit, nil, nil, rawTo{env.Stdout})
	}
	var q url.Values
	if *head != "" {
		q = url.Values{"head": {*head}}
	}
	var res wire.AuditCheck
	if err := sf.call(ctx, env, http.MethodGet, wire.PathAdminAuditVerify, q, nil, &res); err != nil {
		return err
	}
	if !res.OK {
		return fmt.Errorf("audit log BROKEN at record %d: %s (%d records)", res.BrokenAt, res.Problem, res.Records)
	}
	macs := "MACs not checked: the server has no audit key"
	if res.MACChecked {
		macs = "MACs checked"
	}
	fmt.Fprintf(env.Stdout, "audit log intact: %d records, %s\nhead: %s (keep it elsewhere; pass it to the next verify as -head)\n", res.Records, macs, res.Head)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "admitted"
	}
	return s
}
