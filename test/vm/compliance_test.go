package vm_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openvex/go-vex/pkg/vex"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

// unameOptions are the uname options kcare-uname takes, checked against
// the guest's own uname.
var unameOptions = []string{"", "-s", "-n", "-r", "-v", "-m", "-p", "-i", "-o", "-a", "--all", "-snrvmo", "--kernel-release", "--kernel-version"}

// sameAsUname checks that kcare-uname prints what uname prints, for every
// option except those in differ.
func (g *guest) sameAsUname(differ ...string) {
	g.t.Helper()
	for _, opt := range unameOptions {
		skip := false
		for _, d := range differ {
			skip = skip || d == opt
		}
		if skip {
			continue
		}
		want, got := g.ok("uname "+opt), g.ok("kcare-uname "+opt)
		if got != want {
			g.t.Errorf("kcare-uname %s = %q, uname %s = %q; want the same", opt, got, opt, want)
		}
	}
}

// debianUTS splits a Debian kernel's uname -v: "#1 SMP PREEMPT_DYNAMIC
// Debian 6.1.158-1 (2025-11-09)".
var debianUTS = regexp.MustCompile(`^(.* Debian )(\S+) \((\d{4}-\d\d-\d\d)\)$`)

// TestCompliance: the effective version a scanner sees of the live-patched
// guest. kcare-uname shows the effective release and version once a level
// is applied while uname and /proc/version never change; -a differs only
// in those two fields; after --unload the two agree again. kcarectl --vex
// states the level's CVEs fixed for the installed kernel package.
func TestCompliance(t *testing.T) {
	f := requireVM(t)
	g := boot(t, f, []qemu.Share{{Tag: "host", HostDir: f.Dir, GuestPath: "/mnt/host"}}, false)
	release := f.Kernel.Release
	effRelease := fixture.Effective(release, 1)
	effPackage := fixture.EffectiveVersion(f.Kernel.Version, 1)
	unameR := strings.TrimSpace(g.ok("uname -r"))
	unameV := strings.TrimSpace(g.ok("uname -v"))
	unameA := g.ok("uname -a")
	procVersion := g.ok("cat /proc/version")
	if unameR != release {
		t.Fatalf("guest runs %q, the fixture is for %q", unameR, release)
	}
	m := debianUTS.FindStringSubmatch(unameV)
	if m == nil {
		t.Fatalf("uname -v %q is not a Debian kernel's", unameV)
	}
	// The level's release date (fixture level 1: 2026-11-11) and its
	// effective package version replace the kernel's own.
	effVersion := m[1] + effPackage + " (2026-11-11)"

	t.Run("1_before", func(t *testing.T) {
		g.t = t
		g.sameAsUname()
		g.ok("test ! -e /var/lib/kcare/effective_version")
	})

	t.Run("2_applied", func(t *testing.T) {
		g.t = t
		if r := g.kcarectl("--apply /mnt/host/l1.kcp"); r.Exit != 0 {
			t.Fatalf("kcarectl --apply l1: exit %d: %s", r.Exit, r.Stderr)
		}
		if got := g.ok("kcare-uname -r"); got != effRelease+"\n" {
			t.Errorf("kcare-uname -r = %q, want %q", got, effRelease)
		}
		if got := g.ok("kcare-uname -v"); got != effVersion+"\n" {
			t.Errorf("kcare-uname -v = %q, want %q", got, effVersion)
		}
		if got := g.ok("kcarectl --uname"); got != effRelease+"\n" {
			t.Errorf("kcarectl --uname = %q, want %q", got, effRelease)
		}
		// uname and /proc/version never change.
		if got := g.ok("uname -r"); got != release+"\n" {
			t.Errorf("uname -r = %q, want %q unchanged", got, release)
		}
		if got := g.ok("uname -a"); got != unameA {
			t.Errorf("uname -a = %q, want %q unchanged", got, unameA)
		}
		if got := g.ok("cat /proc/version"); got != procVersion {
			t.Errorf("/proc/version = %q, want %q unchanged", got, procVersion)
		}
		// kcare-uname -a is uname -a with the release and version fields replaced.
		want := strings.Replace(strings.Replace(unameA, " "+release+" ", " "+effRelease+" ", 1), " "+unameV+" ", " "+effVersion+" ", 1)
		if want == unameA {
			t.Fatalf("cannot find the release and version in uname -a %q", unameA)
		}
		for _, opt := range []string{"-a", "--all"} {
			if got := g.ok("kcare-uname " + opt); got != want {
				t.Errorf("kcare-uname %s = %q, want %q", opt, got, want)
			}
		}
		g.sameAsUname("", "-r", "-v", "-a", "--all", "-snrvmo", "--kernel-release", "--kernel-version")

		// What the scanner interface reads.
		wantFile := fmt.Sprintf("%s\n%s\n%s\n%s\n%s\n%s\n", effRelease, effVersion, effPackage, release, g.info().Kernel.BuildID, "kcare_test_l1")
		if got := g.ok("cat /var/lib/kcare/effective_version"); got != wantFile {
			t.Errorf("/var/lib/kcare/effective_version = %q, want %q", got, wantFile)
		}
		if got := g.ok("cat /var/lib/kcare/cvelist"); got != "CVE-2026-1001\n" {
			t.Errorf("/var/lib/kcare/cvelist = %q, want the level's CVE", got)
		}
	})

	t.Run("3_vex", func(t *testing.T) {
		g.t = t
		status := fmt.Sprintf("Package: linux-image-%s\nStatus: install ok installed\nPriority: optional\nSection: kernel\nArchitecture: amd64\nVersion: %s\nDescription: Linux for 64-bit PCs (signed)\n",
			release, f.Kernel.Version)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if r, err := g.vm.Exec(ctx, qemu.Command{Argv: []string{"/bin/sh", "-c", "mkdir -p /var/lib/dpkg && cat > /var/lib/dpkg/status"}, Stdin: status}); err != nil || r.Exit != 0 {
			t.Fatalf("write the guest's dpkg status: %v %+v", err, r)
		}
		out := g.ok("kcarectl --vex")
		doc, err := vex.Parse([]byte(out))
		if err != nil {
			t.Fatalf("go-vex cannot parse kcarectl --vex: %v\n%s", err, out)
		}
		purl := agent.Package{Type: "deb", Namespace: "debian", Name: "linux-image-" + release, Version: f.Kernel.Version, Arch: "amd64"}.PURL()
		var cves []string
		for _, s := range doc.Statements {
			cves = append(cves, string(s.Vulnerability.Name))
			if err := s.Validate(); err != nil || s.Status != vex.StatusFixed || len(s.Products) != 1 || s.Products[0].ID != purl {
				t.Errorf("statement %+v (%v); want fixed for %s", s, err, purl)
			}
		}
		if strings.Join(cves, " ") != "CVE-2026-1001" {
			t.Errorf("VEX statements for %q, want exactly the applied level's CVE-2026-1001", cves)
		}
	})

	t.Run("4_unloaded", func(t *testing.T) {
		g.t = t
		if r := g.kcarectl("--unload"); r.Exit != 0 {
			t.Fatalf("kcarectl --unload: exit %d: %s", r.Exit, r.Stderr)
		}
		g.sameAsUname()
		if got := g.ok("kcare-uname -a"); got != unameA {
			t.Errorf("kcare-uname -a after unload = %q, want uname -a %q", got, unameA)
		}
		g.ok("test ! -e /var/lib/kcare/effective_version && test ! -e /var/lib/kcare/cvelist")
		if doc, err := vex.Parse([]byte(g.ok("kcarectl --vex"))); err != nil || len(doc.Statements) != 0 {
			t.Errorf("kcarectl --vex after unload: %v, %d statements; want none", err, len(doc.Statements))
		}
	})
}
