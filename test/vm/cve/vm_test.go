package cve_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/debian"
	"github.com/kcare/kcare/test/vm/cve"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/qemu"
)

// requireVM skips with -short, and when the host cannot boot a guest
// (fails in CI). It returns the fixes under testdata/cve.
func requireVM(t *testing.T) []cve.Fix {
	t.Helper()
	if testing.Short() {
		t.Skip("VM tests do not run with -short")
	}
	if err := qemu.CheckHost(); err != nil {
		ciFail(t, "VM suite cannot run: %v", err)
	}
	fixes, err := cve.Load(filepath.Join("..", "..", "..", "testdata", "cve"))
	if err != nil {
		t.Fatal(err)
	}
	return fixes
}

// ciFail fails the test under CI=true and skips it elsewhere.
func ciFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// kernelFor resolves a kernel of the fixes from what the archive serves
// (pick: cve.VulnerableKernel or cve.FixedKernel), unless env names a
// release. When the archive serves none, the test fails in CI with what
// is missing, so the team picks a new target.
func kernelFor(t *testing.T, ctx context.Context, fixes []cve.Fix, env string,
	pick func(*debian.Catalog, []cve.Fix) (debian.Set, error)) *debkernel.Kernel {
	t.Helper()
	cache := debkernel.DefaultCacheDir()
	release := os.Getenv(env)
	if release == "" {
		c, err := debkernel.Catalog(ctx, cache, t.Logf)
		if err != nil {
			ciFail(t, "list the kernels the archive serves: %v", err)
		}
		s, err := pick(c, fixes)
		if err != nil {
			if errors.Is(err, cve.ErrNoVulnerableKernel) || errors.Is(err, cve.ErrNoFixedKernel) {
				ciFail(t, "%v", err)
			}
			t.Fatal(err)
		}
		release = s.Release
	}
	k, err := debkernel.FetchRelease(ctx, cache, release, t.Logf)
	if err != nil {
		t.Fatalf("kernel %s: %v", release, err)
	}
	return k
}

// guest runs commands in a booted VM for a test.
type guest struct {
	t   *testing.T
	vm  *qemu.VM
	ctx context.Context
}

func (g *guest) run(script string) qemu.Result {
	g.t.Helper()
	r, err := g.vm.Shell(g.ctx, script)
	if err != nil {
		g.t.Fatalf("guest %q: %v", script, err)
	}
	return r
}

func (g *guest) ok(script string) string {
	g.t.Helper()
	r := g.run(script)
	if r.Exit != 0 {
		g.t.Fatalf("guest %q: exit %d\nstdout: %s\nstderr: %s", script, r.Exit, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// repro runs a fix's reproducer and returns what it printed ("fixed",
// "vulnerable") and its exit code.
func (g *guest) repro(f cve.Fix) (string, int) {
	g.t.Helper()
	r := g.run("/usr/bin/repro-" + f.CVE.ID)
	if r.Exit == cve.ExitCannotTest {
		g.t.Fatalf("%s cannot test: %s", f.CVE.ID, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout), r.Exit
}

// step prints the one line of a step, "CVE-2026-93146: after=fixed",
// and checks the reproducer said want.
func (g *guest) step(f cve.Fix, step, want string) {
	g.t.Helper()
	got, exit := g.repro(f)
	fmt.Printf("%s: %s=%s\n", f.CVE.ID, step, got)
	if got != want {
		g.t.Errorf("%s: %s=%s (exit %d); want %s", f.CVE.ID, step, got, exit, want)
	}
}

// klpLog returns the kernel's livepatch: log lines since the last call.
func (g *guest) klpLog() []string {
	g.t.Helper()
	out := g.ok("dmesg -c | grep 'livepatch:' | sed 's/^\\[[ 0-9.]*\\] //'; true")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// wantLog checks that want appears in got, in order.
func wantLog(t *testing.T, got []string, want ...string) {
	t.Helper()
	i := 0
	for _, l := range got {
		if i < len(want) && l == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("kernel livepatch log lacks %q (in order)\ngot:\n  %s", want[i], strings.Join(got, "\n  "))
	}
}

// waitFor polls a guest script until it succeeds, for at most bound.
func (g *guest) waitFor(what, script string, bound time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		r, err := g.vm.Shell(g.ctx, script)
		if err == nil && r.Exit == 0 {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("waited %s for %s", bound, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
