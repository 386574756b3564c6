package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/pkg/cmdline"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// auditCmd verifies or exports the audit log straight from the state file,
// with the server stopped (one process owns the file); a running server
// answers the same through GET /v1/admin/audit and /v1/admin/audit/verify
// (enrollctl audit). keygen writes a new audit key.
func auditCmd() *cobra.Command {
	group := cmdline.Group(&cobra.Command{
		Use:   "audit",
		Short: "Verify or export the audit log (server stopped), or make an audit key",
		Long: `Verify or export the hash-chained audit log straight from the state file.
One process owns the file: stop the server first, or ask the running server
with enrollctl audit verify|export.`,
		Example: "  enroll-server audit verify -config /etc/enroll-server/config.yaml\n" +
			"  enroll-server audit export -config /etc/enroll-server/config.yaml > audit.jsonl\n" +
			"  enroll-server audit keygen /etc/enroll-server/audit.key",
	})

	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit log's hash chain and MACs (exit 1 when broken)",
		Long: `Verify the audit log's hash chain, and its MACs when audit.key_file is set.
It prints the log's head (SEQ:HASH): keep it elsewhere and pass it to the
next verify as -head, which then names any record dropped since. Exits 1
when the log is broken.`,
		Example: "  enroll-server audit verify -config /etc/enroll-server/config.yaml\n" +
			"  enroll-server audit verify -config config.yaml -head 42:3f9a...\n" +
			"  enroll-server audit verify -config config.yaml -json",
		Args: cobra.NoArgs,
	}
	verifyPath := configFlag(verify)
	headFlag := verify.Flags().String("head", "", "a head (SEQ:HASH) printed by an earlier verify: records dropped since are named")
	verifyJSON := cmdline.JSONFlag(verify)
	verify.RunE = func(cmd *cobra.Command, _ []string) error {
		var head *audit.Head
		if *headFlag != "" {
			h, err := audit.ParseHead(*headFlag)
			if err != nil {
				return cmdline.Usagef("-head: %w", err)
			}
			head = &h
		}
		recs, key, err := readAudit(cmd.Context(), *verifyPath)
		if err != nil {
			return err
		}
		res := admin.Check(recs, key, head)
		if *verifyJSON {
			if err := cmdline.WriteJSON(cmd.OutOrStdout(), res); err != nil {
				return err
			}
		} else {
			PrintAuditCheck(cmd.OutOrStdout(), res)
		}
		if !res.OK {
			return cmdline.Exit(cmdline.ExitFailure)
		}
		return nil
	}

	export := &cobra.Command{
		Use:   "export",
		Short: "Print the audit log as JSON lines",
		Long: `Print every audit record as one JSON object per line (JSON Lines), oldest
first. The output is JSON with or without -json.`,
		Example: "  enroll-server audit export -config /etc/enroll-server/config.yaml > audit.jsonl",
		Args:    cobra.NoArgs,
	}
	exportPath := configFlag(export)
	cmdline.JSONFlag(export) // accepted as on every read command: export always prints JSON
	export.RunE = func(cmd *cobra.Command, _ []string) error {
		recs, _, err := readAudit(cmd.Context(), *exportPath)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(cmd.OutOrStdout())
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}

	keygen := &cobra.Command{
		Use:   "keygen FILE",
		Short: "Write a new random audit key, owner-only, never over an existing file",
		Long: `Write a new random audit key to FILE (mode 0600); it refuses to overwrite
one. Set audit.key_file to it, and keep it off the database's host and out of
its backups.`,
		Example: "  enroll-server audit keygen /etc/enroll-server/audit.key",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return auditKeygen(args[0], cmd.OutOrStdout())
		},
	}
	group.AddCommand(verify, export, keygen)
	return group
}

// readAudit reads the audit log and the audit key of the configuration
// at path.
func readAudit(ctx context.Context, path string) ([]audit.Record, audit.Key, error) {
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	var key audit.Key
	if cfg.Audit.KeyFile != "" {
		if key, err = audit.LoadKey(cfg.Audit.KeyFile); err != nil {
			return nil, nil, err
		}
	}
	store, err := boltstore.Open(cfg.StatePath)
	if err != nil {
		return nil, nil, err
	}
	defer store.Close()
	recs, err := store.Audit(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read audit log: %w", err)
	}
	return recs, key, nil
}

// PrintAuditCheck says what a verify found, with the head to keep for the
// next one; it reports whether the log is intact.
func PrintAuditCheck(w io.Writer, res wire.AuditCheck) bool {
	if !res.OK {
		fmt.Fprintf(w, "audit log BROKEN at record %d: %s (%d records)\n", res.BrokenAt, res.Problem, res.Records)
		return false
	}
	macs := "MACs not checked: no audit key"
	if res.MACChecked {
		macs = "MACs checked"
	}
	fmt.Fprintf(w, "audit log intact: %d records, %s\n", res.Records, macs)
	if res.Head != "" {
		fmt.Fprintf(w, "head: %s (keep it elsewhere; pass it to the next verify as -head)\n", res.Head)
	}
	return true
}

// auditKeygen writes a new random audit key, owner-only, never over an
// existing file.
func auditKeygen(path string, stdout io.Writer) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists; a new key would not verify the records sealed with it", path)
	}
	if err == nil {
		_, err = f.Write([]byte(rand.Text() + rand.Text()))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("audit key: %w", err)
	}
	fmt.Fprintf(stdout, "wrote a new audit key to %s; set audit.key_file to it\n", path)
	return nil
}
