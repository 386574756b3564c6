package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/pkg/wire"
)

const auditUsage = "usage: enroll-server audit verify [-head SEQ:HASH] -config FILE | export -config FILE | keygen FILE"

// auditCmd verifies or exports the audit log straight from the state file,
// with the server stopped (one process owns the file); a running server
// answers the same through GET /v1/admin/audit and /v1/admin/audit/verify.
// keygen writes a new audit key.
func auditCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "keygen":
		return auditKeygen(args[1:], stdout, stderr)
	case "verify", "export":
	default:
		fmt.Fprintln(stderr, auditUsage)
		return 2
	}
	fs := flag.NewFlagSet("audit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	headFlag := ""
	if args[0] == "verify" {
		fs.StringVar(&headFlag, "head", "", "a head (SEQ:HASH) printed by an earlier verify: records dropped since are named")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var head *audit.Head
	if headFlag != "" {
		h, err := audit.ParseHead(headFlag)
		if err != nil {
			fmt.Fprintln(stderr, "enroll-server: -head:", err)
			return 2
		}
		head = &h
	}
	cfg, err := config.Load(*path, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-server:", err)
		return 1
	}
	var key audit.Key
	if cfg.Audit.KeyFile != "" {
		if key, err = audit.LoadKey(cfg.Audit.KeyFile); err != nil {
			fmt.Fprintln(stderr, "enroll-server:", err)
			return 1
		}
	}
	store, err := boltstore.Open(cfg.StatePath)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-server:", err)
		return 1
	}
	defer store.Close()
	recs, err := store.Audit(context.Background())
	if err != nil {
		fmt.Fprintln(stderr, "enroll-server: read audit log:", err)
		return 1
	}
	if args[0] == "export" {
		enc := json.NewEncoder(stdout)
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return 1
			}
		}
		return 0
	}
	if !PrintAuditCheck(stdout, admin.Check(recs, key, head)) {
		return 1
	}
	return 0
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
func auditKeygen(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: enroll-server audit keygen FILE")
		return 2
	}
	f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		fmt.Fprintf(stderr, "enroll-server: %s exists; a new key would not verify the records sealed with it\n", args[0])
		return 1
	}
	if err == nil {
		_, err = f.Write([]byte(rand.Text() + rand.Text()))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "enroll-server: audit key:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote a new audit key to %s; set audit.key_file to it\n", args[0])
	return 0
}
