package cve_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/cve"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/qemu"
)

// Kernels the reproducers are proved on: the oldest complete bookworm set
// still served, which carries all three bugs, and the current one, which
// carries all three fixes.
const (
	defaultVulnerable = "6.1.0-47-amd64" // 6.1.170-3
	defaultFixed      = "6.1.0-57-amd64" // 6.1.192-3
)

func release(env, def string) string {
	if r := os.Getenv(env); r != "" {
		return r
	}
	return def
}

// TestReproducers boots the vulnerable and the fixed Debian kernel and runs
// every reproducer in each: each must say "vulnerable" on the first and
// "fixed" on the second. Reproducers never run on the host.
func TestReproducers(t *testing.T) {
	if testing.Short() {
		t.Skip("VM tests do not run with -short")
	}
	if err := qemu.CheckHost(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("VM suite cannot run: %v", err)
		}
		t.Skipf("VM suite cannot run: %v", err)
	}
	fixes, err := cve.Load(filepath.Join("..", "..", "..", "testdata", "cve"))
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	files := map[string]string{}
	for _, f := range fixes {
		bin := filepath.Join(work, "repro-"+f.CVE.ID)
		if err := cve.BuildReproducer(ctx, f, bin); err != nil {
			t.Fatal(err)
		}
		files["/usr/bin/repro-"+f.CVE.ID] = bin
	}

	for _, k := range []struct {
		name, release, want string
		exit                int
	}{
		{"vulnerable", release("KCARE_TEST_VULNERABLE_RELEASE", defaultVulnerable), "vulnerable", cve.ExitVulnerable},
		{"fixed", release("KCARE_TEST_FIXED_RELEASE", defaultFixed), "fixed", cve.ExitFixed},
	} {
		t.Run(k.name, func(t *testing.T) {
			kern, err := debkernel.FetchRelease(ctx, debkernel.DefaultCacheDir(), k.release, t.Logf)
			if err != nil {
				t.Fatalf("the %s kernel %s: %v", k.name, k.release, err)
			}
			initrd := filepath.Join(work, k.name+".cpio")
			if err := qemu.BuildInitramfs(ctx, qemu.Image{Kernel: kern, Files: files}, initrd); err != nil {
				t.Fatal(err)
			}
			vm, err := qemu.Start(ctx, qemu.Config{Kernel: kern.Vmlinux, Initrd: initrd, ConsoleLog: filepath.Join(work, k.name+".console")})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Stop()
			t.Logf("booted %s (%s) in %v", kern.Release, kern.Version, vm.BootTime().Round(time.Millisecond))
			for _, f := range fixes {
				r, err := vm.Run(ctx, "/usr/bin/repro-"+f.CVE.ID)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s on %s: stdout %q exit %d", f.CVE.ID, kern.Release, r.Stdout, r.Exit)
				if r.Stdout != k.want+"\n" || r.Exit != k.exit {
					t.Errorf("%s on %s: stdout %q exit %d, stderr %q; want %q exit %d", f.CVE.ID, kern.Release, r.Stdout, r.Exit, r.Stderr, k.want+"\n", k.exit)
				}
			}
			if t.Failed() {
				t.Logf("guest console:\n%s", vm.Console())
			}
		})
	}
}
