// Command enroll-server is the self-service enrollment server.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edge-enroll/enroll/enroll-server/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
