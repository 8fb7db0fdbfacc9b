package cve_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/cve"
	"github.com/kcare/kcare/test/vm/qemu"
)

// TestFixedKernel boots the newest kernel of the fixes' family the
// archive serves, which carries every fix, and runs every reproducer: each
// must say "fixed". (TestVulnerableKernel runs them on the vulnerable
// kernel.) Reproducers never run on the host.
func TestFixedKernel(t *testing.T) {
	fixes := requireVM(t)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	k := kernelFor(t, ctx, fixes, "KCARE_TEST_FIXED_RELEASE", cve.FixedKernel)
	files := map[string]string{}
	for _, f := range fixes {
		bin := filepath.Join(work, "repro-"+f.CVE.ID)
		if err := cve.BuildReproducer(ctx, f, bin); err != nil {
			t.Fatal(err)
		}
		files["/usr/bin/repro-"+f.CVE.ID] = bin
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := qemu.BuildInitramfs(ctx, qemu.Image{Kernel: k, Files: files}, initrd); err != nil {
		t.Fatal(err)
	}
	vm, err := qemu.Start(ctx, qemu.Config{Kernel: k.Vmlinux, Initrd: initrd, Isolated: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	t.Logf("booted %s (%s) in %v", k.Release, k.Version, vm.BootTime().Round(time.Millisecond))
	g := &guest{t: t, vm: vm, ctx: ctx}
	for _, f := range fixes {
		got, exit := g.repro(f)
		t.Logf("%s on %s: %s, exit %d", f.CVE.ID, k.Release, got, exit)
		if got != "fixed" || exit != cve.ExitFixed {
			t.Errorf("%s on %s: %q exit %d; want fixed exit %d", f.CVE.ID, k.Release, got, exit, cve.ExitFixed)
		}
	}
	if t.Failed() {
		t.Logf("guest console:\n%s", vm.Console())
	}
}
