// Command demo is `make demo`: it fetches the current Debian kernel, builds
// two fixture livepatch levels against its headers, packs and signs them,
// boots the kernel in QEMU, and patches it live with kcarectl, showing the
// patched functions' output before and after.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := qemu.CheckHost(); err != nil {
		return fmt.Errorf("%v (run scripts/setup-debian.sh first)", err)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...) }
	f, err := fixture.Build(ctx, debkernel.DefaultCacheDir(), logf)
	if err != nil {
		return err
	}
	defer os.RemoveAll(f.Dir)

	logf("booting Debian %s (%s) in QEMU", f.Kernel.Release, f.Kernel.Version)
	vm, err := qemu.Start(ctx, qemu.Config{
		Kernel: f.BootImage(),
		Initrd: f.Initrd,
		Shares: []qemu.Share{{Tag: "host", HostDir: f.Dir, GuestPath: "/mnt/host"}},
	})
	if err != nil {
		return err
	}
	defer vm.Stop()
	logf("guest up after %s", vm.BootTime().Round(time.Millisecond))

	steps := []struct{ title, script string }{
		{"The running kernel, unpatched", "uname -r; cat /proc/cmdline; cat /proc/loadavg; kcarectl --info"},
		{"Apply level 1 (patches cmdline_proc_show)", "kcarectl --apply /mnt/host/l1.kcp"},
		{"After level 1", "cat /proc/cmdline; cat /proc/loadavg; ls /sys/kernel/livepatch; uname -r; kcarectl --uname"},
		{"Apply level 2 (cumulative: also loadavg_proc_show), replacing level 1", "kcarectl --apply /mnt/host/l2.kcp"},
		{"After level 2", "cat /proc/cmdline; cat /proc/loadavg; ls /sys/kernel/livepatch; grep ^kcare_ /proc/modules | cut -d' ' -f1"},
		{"kcarectl --info", "kcarectl --info"},
		{"kcarectl --patch-info", "kcarectl --patch-info"},
		{"A tampered bundle is refused", "kcarectl --apply /mnt/host/flipped.kcp; echo exit=$?"},
		{"Unload", "kcarectl --unload"},
		{"After unload", "cat /proc/cmdline; cat /proc/loadavg; ls /sys/kernel/livepatch; kcarectl --uname"},
		{"The kernel's own livepatch log", "dmesg | grep 'livepatch:'"},
	}
	for _, s := range steps {
		fmt.Printf("\n== %s\n", s.title)
		for _, line := range strings.Split(s.script, "; ") {
			fmt.Printf("guest# %s\n", line)
		}
		r, err := vm.Shell(ctx, s.script+" 2>&1")
		if err != nil {
			return err
		}
		fmt.Print(r.Stdout)
		if r.Exit != 0 {
			return fmt.Errorf("%q: exit %d", s.script, r.Exit)
		}
	}
	return nil
}
