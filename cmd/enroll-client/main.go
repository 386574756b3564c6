// Command enroll-client enrolls an edge device with Vault through
// enroll-server and keeps its token alive.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/edge-enroll/enroll/enroll-client/cli"
	"github.com/edge-enroll/enroll/pkg/vaultenv"
)

func main() {
	if ignored := vaultenv.Scrub(); len(ignored) > 0 {
		fmt.Fprintf(os.Stderr, "%s: ignoring %s from the environment: Vault is reached as the configuration says\n", "enroll-client", strings.Join(ignored, ", "))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
