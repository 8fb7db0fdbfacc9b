// Command kcare-uname is uname(1) with the effective kernel release: the
// release whose fixes the applied patch level carries.
package main

import (
	"os"

	"github.com/kcare/kcare/cmd/kcare-uname/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
