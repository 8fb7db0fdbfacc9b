// Command kcarectl is the kcare agent: it applies signed patch levels to
// the running kernel and reports what is applied.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kcare/kcare/cmd/kcarectl/cli"
)

func main() {
	// SIGINT and SIGTERM end the context: kcarectl stops what it waits
	// for, but a reversal under way runs to its end (internal/agent).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
