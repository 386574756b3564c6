// Command enrollctl is the fleet administrator's tool.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edge-enroll/enroll/enroll-server/enrollctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := enrollctl.Run(ctx, os.Args[1:], enrollctl.Env{Getenv: os.Getenv, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
