// Command enroll-client enrolls an edge device with Vault through
// enroll-server and keeps its token alive.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edge-enroll/enroll/enroll-client/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
