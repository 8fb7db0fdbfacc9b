package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kcare/kcare/test/vm/cve"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/guestsyms"
	"github.com/kcare/kcare/test/vm/qemu"
)

// demoCVE is the real fix the demo ends with.
const demoCVE = "CVE-2026-93146"

// cveDemo is the demo's end: a real security fix, live. It boots a second
// guest on the oldest kernel the archive serves that carries the bug, runs
// the bug's reproducer, publishes the fix as a level for that kernel on
// the same portal, has the guest take it with kcarectl, and runs the
// reproducer again: fixed, in the same boot.
func cveDemo(ctx context.Context, f *fixture.Fixture, p *fixture.Portal, logf func(string, ...any)) error {
	fixes, err := cve.Load(filepath.Join(fixture.RepoRoot(), "testdata", "cve"))
	if err != nil {
		return err
	}
	var fix cve.Fix
	for _, x := range fixes {
		if x.CVE.ID == demoCVE {
			fix = x
		}
	}
	if fix.Dir == "" {
		return fmt.Errorf("no %s under testdata/cve", demoCVE)
	}
	cache := debkernel.DefaultCacheDir()
	c, err := debkernel.Catalog(ctx, cache, logf)
	if err != nil {
		return err
	}
	set, err := cve.VulnerableKernel(c, []cve.Fix{fix})
	if err != nil {
		return err
	}
	k, err := debkernel.FetchRelease(ctx, cache, set.Release, logf)
	if err != nil {
		return err
	}
	kallsyms, err := guestsyms.Fetch(ctx, cache, k, logf)
	if err != nil {
		return err
	}
	work := filepath.Join(f.Dir, "cve")
	analyses, err := cve.Analyses(ctx, []cve.Fix{fix}, k, cache, f.Dir, logf)
	if err != nil {
		return err
	}
	logf("building the livepatch of %s for %s with kcare-build", fix.CVE.ID, k.Release)
	if err := mkdir(work); err != nil {
		return err
	}
	kcp, err := cve.BuildLevel(ctx, cve.Level{Kernel: k, Kallsyms: kallsyms, Fixes: []cve.Fix{fix}, Analyses: analyses,
		N: 1, SignKey: f.Path("publisher.key"), Dir: work, Released: time.Now().Add(-time.Hour), Logf: logf})
	if err != nil {
		return err
	}
	repro := filepath.Join(work, "repro")
	if err := cve.BuildReproducer(ctx, fix, repro); err != nil {
		return err
	}
	key, err := p.Eportal("", "key", "add", "--note", "vulnerable guests")
	if err != nil {
		return err
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := qemu.BuildInitramfs(ctx, qemu.Image{Kernel: k, Files: map[string]string{
		"/usr/bin/kcarectl":                       f.Path("kcarectl"),
		"/usr/bin/repro-" + fix.CVE.ID:            repro,
		"/etc/sysconfig/kcare/keys/publisher.pub": f.Path("publisher.pub"),
		"/etc/sysconfig/kcare/keys/portal.pub":    filepath.Join(p.Data, "portal.pub"),
	}}, initrd); err != nil {
		return err
	}
	logf("booting Debian %s (%s), which carries %s, in QEMU", k.Release, k.Version, fix.CVE.ID)
	vm, err := qemu.Start(ctx, qemu.Config{Kernel: k.Vmlinux, Initrd: initrd})
	if err != nil {
		return err
	}
	defer vm.Stop()

	guest := func(title string, cmds ...string) error { return guestStep(ctx, vm, title, cmds...) }
	repro = "repro-" + fix.CVE.ID
	conf := fmt.Sprintf("printf 'PATCH_SERVER=%s\\n' > /etc/sysconfig/kcare/kcare.conf", p.GuestURL())
	steps := []func() error{
		func() error {
			return guest(fmt.Sprintf("A second guest, on a kernel with a real bug: %s (%s)", fix.CVE.ID, fix.CVE.Description),
				"hostname demo-vulnerable", "hostname", "uname -r", "cat /proc/sys/kernel/random/boot_id", repro+" => 1")
		},
		func() error {
			return guest("Register with the portal: nothing for this kernel yet", conf, "kcarectl --register "+key)
		},
		func() error {
			fmt.Printf("\n== On the portal: publish the fix (%s) as level 1 for %s\nhost$ KCARE_PUBLISH_TOKEN=... kcare-build publish --portal %s %s\n",
				fix.Debian.UpstreamSubject, k.Release, p.URL(), filepath.Base(kcp))
			if err := p.PublishFile(kcp, time.Now().Add(-time.Hour)); err != nil {
				return err
			}
			fmt.Println("published")
			return nil
		},
		func() error { return guest("Update: the fix arrives live", "kcarectl --update") },
		func() error {
			return guest("The same reproducer, the same boot", repro, "cat /proc/sys/kernel/random/boot_id", "kcarectl --patch-info")
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }
