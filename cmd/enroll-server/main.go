// Command enroll-server is the self-service enrollment server.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/edge-enroll/enroll/enroll-server/cli"
	"github.com/edge-enroll/enroll/pkg/vaultenv"
)

func main() {
	if ignored := vaultenv.Scrub(); len(ignored) > 0 {
		fmt.Fprintf(os.Stderr, "%s: ignoring %s from the environment: Vault is reached as the configuration says\n", "enroll-server", strings.Join(ignored, ", "))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
