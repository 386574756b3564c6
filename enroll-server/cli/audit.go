package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/config"
)

// auditCmd verifies or exports the audit log straight from the state file,
// with the server stopped (one process owns the file); a running server
// answers the same through GET /v1/admin/audit and /v1/admin/audit/verify.
func auditCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "export") {
		fmt.Fprintln(stderr, "usage: enroll-server audit verify|export -config FILE")
		return 2
	}
	fs := flag.NewFlagSet("audit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := config.Load(*path, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-server:", err)
		return 1
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
	res := admin.Check(recs)
	if !res.OK {
		fmt.Fprintf(stdout, "audit log BROKEN at record %d: %s (%d records)\n", res.BrokenAt, res.Problem, res.Records)
		return 1
	}
	fmt.Fprintf(stdout, "audit log intact: %d records\n", res.Records)
	return 0
}
