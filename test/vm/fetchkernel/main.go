// Command fetchkernel downloads and extracts the current Debian kernel
// into the test cache and prints shell assignments naming its parts, for
// scripts: KCARE_TEST_VMLINUZ, KCARE_TEST_HEADERS, KCARE_TEST_RELEASE.
//
// With -kallsyms it also makes sure the cache holds the kernel's
// /proc/kallsyms dump (booting the kernel in QEMU once per build-id when
// it does not) and prints `export KCARE_TEST_KALLSYMS=PATH`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/guestsyms"
)

func main() {
	kallsyms := flag.Bool("kallsyms", false, "also dump the kernel's /proc/kallsyms into the cache and print its path")
	flag.Parse()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "fetchkernel: "+format+"\n", args...) }
	ctx := context.Background()
	cache := debkernel.DefaultCacheDir()
	k, err := debkernel.Fetch(ctx, cache, logf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fetchkernel: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("KCARE_TEST_VMLINUZ=%s\nKCARE_TEST_HEADERS=%s\nKCARE_TEST_RELEASE=%s\n", k.Vmlinuz, k.HeadersDir, k.Release)
	if *kallsyms {
		path, err := guestsyms.Fetch(ctx, cache, k, logf)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fetchkernel: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("export KCARE_TEST_KALLSYMS=%s\n", path)
	}
}
