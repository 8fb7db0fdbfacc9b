package vm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/debian"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

// familyTimeout bounds each family's part of TestCore: its guest's boot
// and scenarios.
const familyTimeout = 5 * time.Minute

// familyFixtures returns a fixture per kernel family: the suite's own for
// its family, and for each other family its newest kernel, fetched and
// built (with its own compiler: a build root for trixie) here.
func familyFixtures(t *testing.T, shared *fixture.Fixture) map[string]*fixture.Fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	cache := debkernel.DefaultCacheDir()
	out := map[string]*fixture.Fixture{}
	for _, fam := range debian.FamilyNames() {
		if shared.Kernel.Family() == fam {
			out[fam] = shared
			continue
		}
		start := time.Now()
		k, err := debkernel.FetchFamily(ctx, cache, fam, t.Logf)
		if err != nil {
			ciFatal(t, "the newest %s kernel: %v", fam, err)
		}
		f, err := fixture.BuildKernel(ctx, cache, k, fixture.Options{Tools: shared.Dir}, t.Logf)
		if err != nil {
			t.Fatalf("the %s fixture for %s: %v", fam, k.Release, err)
		}
		t.Cleanup(func() { os.RemoveAll(f.Dir) })
		t.Logf("%s: %s (%s) fetched and built in %s", fam, k.Release, k.Version, time.Since(start).Round(time.Millisecond))
		out[fam] = f
	}
	return out
}

// ciFatal fails the test in CI and skips it elsewhere.
func ciFatal(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// TestCore runs the core scenarios on the newest kernel of each family:
// bookworm's 6.1, bookworm's 6.12 (bookworm-security), trixie's 6.12. In
// each family's guest, one after the other: apply level 1, replace it
// with the cumulative level 2, unload, refuse the bundles built for every
// other kernel (the other families' and one of the same release with
// another build-id), and reverse a transition a sleeping task stalls.
func TestCore(t *testing.T) {
	shared := requireVM(t)
	fixtures := familyFixtures(t, shared)

	// Every family's level 1, for the others to refuse.
	others := t.TempDir()
	for fam, f := range fixtures {
		for _, ext := range []string{"", ".sig"} {
			if err := os.Link(f.Path("l1.kcp"+ext), filepath.Join(others, fam+"-l1.kcp"+ext)); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, fam := range debian.FamilyNames() {
		f := fixtures[fam]
		t.Run(fam, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), familyTimeout)
			defer cancel()
			g := boot(t, f, []qemu.Share{
				{Tag: "host", HostDir: f.Dir, GuestPath: "/mnt/host"},
				{Tag: "others", HostDir: others, GuestPath: "/mnt/others"},
			}, false)
			g.ctx = ctx
			release := f.Kernel.Release
			t.Logf("%s: booted %s (%s) in %s", fam, release, f.Kernel.Version, g.vm.BootTime().Round(time.Millisecond))
			if got := strings.TrimSpace(g.ok("uname -r")); got != release {
				t.Fatalf("the guest runs %q; want %s", got, release)
			}
			g.klpLog()
			coreScenarios(t, g, fam, release, fixtures)
		})
	}
}

// coreScenarios runs the core scenarios as subtests of a family's test.
func coreScenarios(t *testing.T, g *guest, fam, release string, fixtures map[string]*fixture.Fixture) {
	t.Run("apply", func(t *testing.T) {
		g.t = t
		g.unpatched()
		if r := g.kcarectl("--apply /mnt/host/l1.kcp"); r.Exit != 0 {
			t.Fatalf("kcarectl --apply l1: exit %d: %s", r.Exit, r.Stderr)
		}
		if got := g.cmdline(); got != cmdlineL1 {
			t.Errorf("/proc/cmdline = %q, want %q", got, cmdlineL1)
		}
		g.wantModules("kcare_test_l1", "kcare_test_l1")
		if info := g.info(); info.State != "applied" || info.Level != 1 || info.Kernel.Release != release {
			t.Errorf("info = %+v, want applied level 1 on %s", info, release)
		}
		wantLog(t, g.klpLog(),
			"livepatch: enabling patch 'kcare_test_l1'",
			"livepatch: 'kcare_test_l1': starting patching transition",
			"livepatch: 'kcare_test_l1': patching complete")
	})

	t.Run("replace", func(t *testing.T) {
		g.t = t
		if r := g.kcarectl("--apply /mnt/host/l2.kcp"); r.Exit != 0 {
			t.Fatalf("kcarectl --apply l2: exit %d: %s", r.Exit, r.Stderr)
		}
		if got, want := g.cmdline()+g.loadavg(), cmdlineL2+loadavgL2; got != want {
			t.Errorf("/proc/cmdline and /proc/loadavg = %q, want %q", got, want)
		}
		// The cumulative level replaced level 1, whose module is gone.
		g.wantModules("kcare_test_l2", "kcare_test_l2")
		wantLog(t, g.klpLog(),
			"livepatch: enabling patch 'kcare_test_l2'",
			"livepatch: 'kcare_test_l2': starting patching transition",
			"livepatch: 'kcare_test_l2': patching complete")
	})

	t.Run("unload", func(t *testing.T) {
		g.t = t
		if r := g.kcarectl("--unload"); r.Exit != 0 {
			t.Fatalf("kcarectl --unload: exit %d: %s", r.Exit, r.Stderr)
		}
		g.unpatched()
		g.wantModules("", "")
		if info := g.info(); info.State != "none" {
			t.Errorf("info = %+v, want none", info)
		}
		wantLog(t, g.klpLog(),
			"livepatch: 'kcare_test_l2': starting unpatching transition",
			"livepatch: 'kcare_test_l2': unpatching complete")
	})

	t.Run("other_kernel", func(t *testing.T) {
		g.t = t
		bundles := []string{"/mnt/host/other-kernel.kcp"}
		for _, other := range debian.FamilyNames() {
			if other != fam {
				bundles = append(bundles, "/mnt/others/"+other+"-l1.kcp")
			}
		}
		for _, b := range bundles {
			r := g.kcarectl("--apply " + b)
			if r.Exit != 3 || !strings.Contains(r.Stderr, "bundle is for another kernel") {
				t.Errorf("apply %s on %s: exit %d, stderr %q; want exit 3, bundle is for another kernel", b, release, r.Exit, r.Stderr)
			}
		}
		g.wantModules("", "")
		g.unpatched()
		if log := g.klpLog(); len(log) != 0 {
			t.Errorf("the kernel logged livepatch activity for refused bundles: %q", log)
		}
	})

	t.Run("stall_reversed", func(t *testing.T) {
		g.t = t
		if r := g.kcarectl("--apply /mnt/host/l2.kcp"); r.Exit != 0 {
			t.Fatalf("kcarectl --apply l2: exit %d: %s", r.Exit, r.Stderr)
		}
		pid := strings.TrimSpace(g.ok("pauser </dev/null >/dev/null 2>&1 & echo $!"))
		defer g.sh("kill " + pid)
		g.ok(fmt.Sprintf("for i in $(seq 50); do grep -q '^State:.*S (sleeping)' /proc/%s/status && exit 0; sleep 0.1; done; exit 1", pid))
		g.klpLog()
		r := g.kcarectl("--apply /mnt/host/l3.kcp --transition-timeout 5s")
		if r.Exit != 5 || !strings.Contains(r.Stderr, fmt.Sprintf("pauser[%s]", pid)) {
			t.Fatalf("kcarectl --apply l3 with a sleeping task: exit %d, want 5 naming pauser[%s]\nstderr: %s", r.Exit, pid, r.Stderr)
		}
		if got, want := g.cmdline()+g.loadavg(), cmdlineL2+loadavgL2; got != want {
			t.Errorf("after the reversed transition: %q, want level 2's %q", got, want)
		}
		g.wantModules("kcare_test_l2", "kcare_test_l2")
		wantLog(t, g.klpLog(),
			"livepatch: enabling patch 'kcare_test_l3'",
			"livepatch: 'kcare_test_l3': starting patching transition",
			"livepatch: 'kcare_test_l3': starting unpatching transition",
			"livepatch: 'kcare_test_l3': unpatching complete")
		if r := g.kcarectl("--unload"); r.Exit != 0 {
			t.Errorf("kcarectl --unload: exit %d: %s", r.Exit, r.Stderr)
		}
	})
}
