// Command eportal is kcare's patch server and on-premises portal.
package main

import (
	"context"
	"os"

	"github.com/kcare/kcare/cmd/eportal/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
