// Command kcarectl is the kcare agent: it applies signed patch levels to
// the running kernel and reports what is applied.
package main

import (
	"context"
	"os"

	"github.com/kcare/kcare/cmd/kcarectl/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
