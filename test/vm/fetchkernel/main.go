// Command fetchkernel downloads and extracts the current Debian kernel
// into the test cache and prints shell assignments naming its parts, for
// scripts: KCARE_TEST_VMLINUZ, KCARE_TEST_HEADERS, KCARE_TEST_RELEASE.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kcare/kcare/test/vm/debkernel"
)

func main() {
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "fetchkernel: "+format+"\n", args...) }
	k, err := debkernel.Fetch(context.Background(), debkernel.DefaultCacheDir(), logf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fetchkernel: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("KCARE_TEST_VMLINUZ=%s\nKCARE_TEST_HEADERS=%s\nKCARE_TEST_RELEASE=%s\n", k.Vmlinuz, k.HeadersDir, k.Release)
}
