// Command check_kcare is the Nagios and Zabbix plugin: it asks an eportal
// how the servers of a key (or a reseller login) are patched.
package main

import (
	"context"
	"os"

	"github.com/kcare/kcare/cmd/check_kcare/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
