// Command kcare-build builds, packs, signs and checks kcare patch bundles.
package main

import (
	"context"
	"os"

	"github.com/kcare/kcare/cmd/kcare-build/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
