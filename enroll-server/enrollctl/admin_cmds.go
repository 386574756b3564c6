package enrollctl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/cmdline"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// deviceActionHelp is what each device action does.
var deviceActionHelp = map[string]struct{ short, long, example string }{
	"approve": {"Let a device awaiting approval enroll",
		`Let a pending device enroll (fleets with admission manual), or let the
request held for an enrolled device through: name it with -enrollment, as
enrollctl devices -json and the device's enroll-client status show it.`,
		"  enrollctl approve -fleet acme sensor-17\n  enrollctl approve -fleet acme sensor-17 -enrollment 3c5e...   # a held request"},
	"reject": {"Refuse a device awaiting approval, or the request held for it",
		`Refuse a pending device, which stops and shows the reason, or the request
held for an enrolled device, which stays as it was.`,
		`  enrollctl reject -fleet acme sensor-18 -reason "unknown serial"`},
	"revoke": {"Cut a device off in Vault",
		`Destroy the device's secret IDs and disable its Vault entity, so no token it
holds works; it cannot enroll again until re-admitted.`,
		`  enrollctl revoke -fleet acme sensor-19 -reason "stolen"`},
	"readmit": {"Let a revoked or quarantined device enroll again",
		`Let a revoked, rejected or quarantined device enroll again; it comes back
with a new role ID, so a new Vault entity.`,
		"  enrollctl readmit -fleet acme sensor-19"},
	"rebind": {"Let a TPM-bound device move to replaced hardware, once",
		`Let the next attested enrollment of a device bound to a TPM bind it to
other hardware (a replaced motherboard), once: it keeps its ID, role and
entity in Vault. The new hardware still proves the fleet's bootstrap
credential and attests with a TPM the fleet trusts; -ek names the only TPM
it may be (its EK hash, as enroll-client tpm-info prints it on the new
hardware). Without -ek the first trusted TPM to enroll with the ID takes it.`,
		"  enrollctl rebind -fleet acme sensor-21 -ek 3f9a...c2 -reason \"RMA 4411\""},
}

// deviceActionCmd: enrollctl approve|reject|revoke|readmit -fleet F
// DEVICE_ID... [-reason R] [-enrollment E]; -device D is the older
// spelling of one DEVICE_ID.
func deviceActionCmd(env Env, action string) *cobra.Command {
	h := deviceActionHelp[action]
	cmd := &cobra.Command{
		Use:     action + " DEVICE_ID...",
		Short:   h.short,
		Long:    h.long + "\n\nSeveral devices are done in order; the first failure stops the rest.",
		Example: h.example,
	}
	fs := cmd.Flags()
	fleet := fs.String("fleet", "", "fleet (required)")
	device := fs.String("device", "", "device ID (the same as a DEVICE_ID argument)")
	reason := fs.String("reason", "", "why (shown to the device and in the audit log)")
	var enrollment *string
	preauthorize := new(bool)
	if action == "approve" {
		enrollment = fs.String("enrollment", "", "the held request's enrollment ID, for a device that is already enrolled")
		// Without it the server refuses a device ID it never heard from: a
		// typo would otherwise wait, approved, for a device nobody has.
		preauthorize = fs.Bool("preauthorize", false, "approve a device ID that has not asked to enroll yet (it may enroll when it first does)")
	}
	ek := new(string)
	if action == "rebind" {
		ek = fs.String("ek", "", "the new TPM's EK hash (64 hex digits, from enroll-client tpm-info): only that TPM may take the device")
	}
	sf := addServerFlags(fs)
	required(cmd, "fleet")
	return withRun(env, cmd, func(ctx context.Context, env Env, args []string) error {
		ids := args
		if *device != "" {
			ids = append([]string{*device}, ids...)
		}
		if len(ids) == 0 {
			return cmdline.Usagef("name the device: enrollctl %s -fleet %s DEVICE_ID", action, *fleet)
		}
		in := wire.Reason{Reason: *reason, Preauthorize: *preauthorize, EKHash: *ek}
		if enrollment != nil && *enrollment != "" {
			if len(ids) > 1 {
				return cmdline.Usagef("-enrollment names one device's held request; give one DEVICE_ID")
			}
			in.Enrollment = *enrollment
		}
		for _, id := range ids {
			if err := validRef(*fleet, id); err != nil {
				return err
			}
		}
		for _, id := range ids {
			var d wire.Device
			if err := sf.call(ctx, env, http.MethodPost, wire.AdminDevicePath(*fleet, id, action), nil, in, &d); err != nil {
				if len(ids) > 1 {
					return fmt.Errorf("%s: %w", id, err)
				}
				return err
			}
			fmt.Fprintf(env.Stdout, "%s %s/%s: done; the device is %s", action, d.Fleet, d.ID, orNone(d.State))
			if d.HeldEnrollment != "" {
				fmt.Fprintf(env.Stdout, ", held request %s", d.HeldEnrollment)
			}
			fmt.Fprintln(env.Stdout)
		}
		return nil
	})
}

func preauthorizeCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "preauthorize DEVICE_ID...",
		Short: "Put devices on a fleet's allow-list",
		Long: `Put devices on a fleet's allow-list: with admission allow-list only these
devices enroll.`,
		Example: "  enrollctl preauthorize -fleet acme sensor-20 sensor-21",
		Args:    cobra.MinimumNArgs(1),
	}
	fleet := cmd.Flags().String("fleet", "", "fleet (required)")
	sf := addServerFlags(cmd.Flags())
	required(cmd, "fleet")
	return withRun(env, cmd, func(ctx context.Context, env Env, ids []string) error {
		var out map[string]any
		if err := sf.call(ctx, env, http.MethodPost, wire.AdminFleetPath(*fleet, "preauthorize"), nil, wire.DeviceIDs{DeviceIDs: ids}, &out); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "pre-authorised %d devices in fleet %s\n", len(ids), *fleet)
		return nil
	})
}

func generationsCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generations",
		Short: "Show a fleet's bootstrap generations and their use",
		Long: `Show a fleet's bootstrap generations: their state, the devices enrolled with
each, DEPENDENTS (devices a retire would strand: enrolled with it but holding
no registered device key yet), enrollment attempts and live secret IDs.`,
		Example: "  enrollctl generations -fleet acme\n  enrollctl generations -fleet acme -json",
		Args:    cobra.NoArgs,
	}
	fleet := cmd.Flags().String("fleet", "", "fleet (required)")
	asJSON := cmdline.JSONFlag(cmd)
	sf := addServerFlags(cmd.Flags())
	required(cmd, "fleet")
	return withRun(env, cmd, func(ctx context.Context, env Env, _ []string) error {
		var g wire.Generations
		if err := sf.call(ctx, env, http.MethodGet, wire.AdminFleetPath(*fleet, "generations"), nil, nil, &g); err != nil {
			return err
		}
		if *asJSON {
			return cmdline.WriteJSON(env.Stdout, g)
		}
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "GEN\tSTATE\tCURRENT\tDEVICES\tDEPENDENTS\tATTEMPTS\tLIVE IDS\tLAST ATTEMPT")
		for _, x := range g.Generations {
			fmt.Fprintf(tw, "%d\t%s\t%v\t%d\t%d\t%d\t%d\t%s\n", x.N, x.State, x.Current, x.Devices, x.Dependents, x.Attempts, x.LiveSecretIDs, timeOrDash(x.LastAttempt))
		}
		return tw.Flush()
	})
}

// rotateCmd starts a new generation and writes a bundle for new images.
func rotateCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Start a new generation and write its bundle",
		Long: `Start a new bootstrap generation and write a bundle for new images, copying
addresses and CAs from the current bundle. Earlier generations stay valid
until you retire them: both enroll meanwhile.`,
		Example: "  enrollctl rotate -fleet acme -bundle old-bundle.json -out new-bundle.json",
		Args:    cobra.NoArgs,
	}
	fs := cmd.Flags()
	fleet := fs.String("fleet", "", "fleet (required)")
	template := fs.String("bundle", "", "current bundle to copy addresses and CAs from (required)")
	out := fs.String("out", "", "new bundle, written 0600 (required)")
	sf := addServerFlags(fs)
	required(cmd, "fleet", "bundle", "out")
	return withRun(env, cmd, func(ctx context.Context, env Env, _ []string) error {
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
	})
}

// endGenerationCmd: enrollctl retire|revoke-generation -fleet F -generation N
func endGenerationCmd(env Env, end string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retire",
		Short: "End an old generation after its grace period",
		Long: `Retire an old bootstrap generation: its enrollment secret IDs are destroyed
and every server replica refuses its enrollment tokens within the grace
printed. Refused within the fleet's rotation_grace since the rotation that
superseded it, and while devices depend on it (see generations), unless
-force (audited as forced).`,
		Example: "  enrollctl retire -fleet acme -generation 1\n  enrollctl retire -fleet acme -generation 1 -force   # strand them knowingly",
		Args:    cobra.NoArgs,
	}
	if end == "revoke" {
		cmd.Use, cmd.Short = "revoke-generation", "End a generation at once (emergency)"
		cmd.Long = `Revoke a bootstrap generation at once, as after a leak: its enrollment
secret IDs are destroyed and every server replica refuses its enrollment
tokens within the grace printed.`
		cmd.Example = "  enrollctl revoke-generation -fleet acme -generation 1"
	}
	fleet := cmd.Flags().String("fleet", "", "fleet (required)")
	n := cmd.Flags().Int("generation", 0, "generation to end (required)")
	force := cmd.Flags().Bool("force", false, "retire even within the rotation grace period or while devices still depend on the generation (audited as forced)")
	sf := addServerFlags(cmd.Flags())
	required(cmd, "fleet", "generation")
	return withRun(env, cmd, func(ctx context.Context, env Env, _ []string) error {
		if *n < 1 {
			return cmdline.Usagef("-generation: want a generation number, 1 or more")
		}
		var r wire.GenerationEnded
		var q url.Values
		if *force {
			q = url.Values{"force": {"true"}}
		}
		if err := sf.call(ctx, env, http.MethodPost, wire.AdminGenerationPath(*fleet, *n, end), q, nil, &r); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "fleet %s: generation %d %s, %d enrollment secret IDs destroyed\n", *fleet, r.Generation, r.State, r.DestroyedSecretIDs)
		fmt.Fprintf(env.Stdout, "grace: every server replica refuses its enrollment tokens within %ds; enrolled devices with a device key are unaffected\n", r.GraceSeconds)
		if r.Dependents > 0 {
			fmt.Fprintf(env.Stdout, "warning: %d devices without a device key depended on it and can no longer re-enroll on their own\n", r.Dependents)
		}
		return nil
	})
}

// alert is a stored security alert, as GET /v1/admin/alerts lists it.
type alert struct {
	Seq          uint64    `json:"seq"`
	Time         time.Time `json:"time"`
	Kind         string    `json:"kind"`
	Fleet        string    `json:"fleet"`
	DeviceID     string    `json:"device_id"`
	EnrollmentID string    `json:"enrollment_id"`
	Detail       string    `json:"detail"`
	AckedBy      string    `json:"acked_by"`
	AckedAt      time.Time `json:"acked_at"`
}

func ackAlertCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ack-alert SEQ...",
		Short: "Acknowledge security alerts (audited, with who and when)",
		Long: `Acknowledge security alerts by their sequence number (the SEQ column of
enrollctl alerts): each records the administrator and the time, once, and
is audited. The fleet console's Acknowledge button makes the same call.`,
		Example: "  enrollctl ack-alert 17\n  enrollctl ack-alert 17 18 19",
		Args:    cobra.MinimumNArgs(1),
	}
	sf := addServerFlags(cmd.Flags())
	return withRun(env, cmd, func(ctx context.Context, env Env, args []string) error {
		for _, seq := range args {
			if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
				return fmt.Errorf("alert %q: want its sequence number (enrollctl alerts lists them)", seq)
			}
			var a alert
			if err := sf.call(ctx, env, http.MethodPost, wire.PathAdminAlerts+"/"+seq+"/acknowledge", nil, nil, &a); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "alert %d (%s) acknowledged by %s at %s\n", a.Seq, a.Kind, a.AckedBy, timeOrDash(a.AckedAt))
		}
		return nil
	})
}

func alertsCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List security alerts",
		Long: `List the stored security alerts (a wrapping token already used, a
creation-path mismatch, no acknowledgement in time, an enrollment token
presented twice, a recovery budget exhausted, cloned state, an identity
claimed) as a table, or with -json as the server returns them.`,
		Example: "  enrollctl alerts\n  enrollctl alerts -json",
		Args:    cobra.NoArgs,
	}
	asJSON := cmdline.JSONFlag(cmd)
	sf := addServerFlags(cmd.Flags())
	return withRun(env, cmd, func(ctx context.Context, env Env, _ []string) error {
		var raw json.RawMessage
		if err := sf.call(ctx, env, http.MethodGet, wire.PathAdminAlerts, nil, nil, &raw); err != nil {
			return err
		}
		if *asJSON {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			return cmdline.WriteJSON(env.Stdout, v)
		}
		var list struct {
			Alerts []alert `json:"alerts"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("the server's alert list: %w", err)
		}
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tFLEET\tDEVICE\tENROLLMENT\tACKNOWLEDGED\tDETAIL")
		for _, a := range list.Alerts {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Seq, timeOrDash(a.Time), a.Kind, dash(a.Fleet), dash(a.DeviceID), dash(a.EnrollmentID), dash(a.AckedBy), a.Detail)
		}
		return tw.Flush()
	})
}

func auditCmd(env Env) *cobra.Command {
	group := cmdline.Group(&cobra.Command{
		Use:   "audit",
		Short: "Check or export the hash-chained audit log",
		Long: `Check or export the running server's hash-chained audit log (with the
server stopped: enroll-server audit verify|export).`,
		Example: "  enrollctl audit verify\n  enrollctl audit export > audit.jsonl",
	})

	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit log's hash chain and MACs (exit 1 when broken)",
		Long: `Verify the audit log's hash chain, and its MACs when the server has an audit
key. It prints the log's head (SEQ:HASH): keep it elsewhere and pass it to
the next verify as -head, which then names any record dropped since.`,
		Example: "  enrollctl audit verify\n  enrollctl audit verify -head 42:3f9a...\n  enrollctl audit verify -json",
		Args:    cobra.NoArgs,
	}
	head := verify.Flags().String("head", "", "a head (SEQ:HASH) printed by an earlier verify; records dropped since are named")
	verifyJSON := cmdline.JSONFlag(verify)
	verifyServer := addServerFlags(verify.Flags())
	withRun(env, verify, func(ctx context.Context, env Env, _ []string) error {
		var q url.Values
		if *head != "" {
			q = url.Values{"head": {*head}}
		}
		var res wire.AuditCheck
		if err := verifyServer.call(ctx, env, http.MethodGet, wire.PathAdminAuditVerify, q, nil, &res); err != nil {
			return err
		}
		if *verifyJSON {
			if err := cmdline.WriteJSON(env.Stdout, res); err != nil {
				return err
			}
			if !res.OK {
				return cmdline.Exit(cmdline.ExitFailure)
			}
			return nil
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
	})

	export := &cobra.Command{
		Use:   "export",
		Short: "Print the audit log as JSON lines",
		Long: `Print every audit record as one JSON object per line (JSON Lines), oldest
first. The output is JSON with or without -json.`,
		Example: "  enrollctl audit export > audit.jsonl",
		Args:    cobra.NoArgs,
	}
	cmdline.JSONFlag(export) // accepted as on every read command: export always prints JSON
	exportServer := addServerFlags(export.Flags())
	withRun(env, export, func(ctx context.Context, env Env, _ []string) error {
		return exportServer.call(ctx, env, http.MethodGet, wire.PathAdminAudit, nil, nil, rawTo{env.Stdout})
	})
	group.AddCommand(verify, export)
	return group
}

func orNone(s string) string {
	if s == "" {
		return "admitted"
	}
	return s
}

// validRef refuses, before asking the server, a fleet or device ID that
// no fleet or device can have: a usage error naming it, not a 404 for an
// endpoint the ID's characters made up.
func validRef(fleet, device string) error {
	if err := wire.ValidateFleet(fleet); err != nil {
		return cmdline.Usagef("-fleet: %v", err)
	}
	if err := wire.ValidateDeviceID(device); err != nil {
		return cmdline.Usagef("%v", err)
	}
	return nil
}
