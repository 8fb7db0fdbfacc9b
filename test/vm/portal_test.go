package vm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

// hostPortal wraps fixture.Portal for a test.
type hostPortal struct {
	*fixture.Portal
	t *testing.T
}

func newHostPortal(t *testing.T, f *fixture.Fixture) *hostPortal {
	t.Helper()
	fp, err := f.NewPortal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := fp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fp.Stop()
		if t.Failed() {
			t.Logf("eportal log:\n%s", tail(fp.Log(), 40))
		}
	})
	return &hostPortal{Portal: fp, t: t}
}

func (p *hostPortal) eportal(stdin string, args ...string) string {
	p.t.Helper()
	out, err := p.Eportal(stdin, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *hostPortal) publish(level int, released time.Time) {
	p.t.Helper()
	if err := p.Publish(level, released); err != nil {
		p.t.Fatal(err)
	}
}

func (p *hostPortal) servers() []map[string]any {
	p.t.Helper()
	s, err := p.Servers()
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

func (p *hostPortal) stop() { p.Stop() }

func TestPortalScenarios(t *testing.T) {
	f := requireVM(t)
	p := newHostPortal(t, f)
	now := time.Now()
	p.publish(1, now.Add(-72*time.Hour))
	p.publish(2, now.Add(-60*time.Hour))
	fleet := p.eportal("", "key", "add", "--note", "fleet")
	sticky := p.eportal("", "key", "add", "--note", "sticky", "--sticky", now.Add(-48*time.Hour).UTC().Format("2006-01-02"))

	share, err := os.MkdirTemp("", "kcare-portal-share-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(share)
	pub, _ := os.ReadFile(filepath.Join(p.Data, "portal.pub"))
	os.WriteFile(filepath.Join(share, "portal.pub"), pub, 0o644)
	g := boot(t, f, []qemu.Share{{Tag: "host", HostDir: share, GuestPath: "/mnt/host"}}, false)
	release := f.Kernel.Release
	conf := func(lines ...string) {
		g.t.Helper()
		g.ok(fmt.Sprintf("mkdir -p /etc/sysconfig/kcare && printf '%%s\\n' %s > /etc/sysconfig/kcare/kcare.conf", shellWords(append([]string{
			"# kcare, set by the VM test",
			"PATCH_SERVER=" + p.GuestURL(),
			"AUTO_UPDATE_DELAY=0",
		}, lines...))))
	}
	g.ok("cp /mnt/host/portal.pub /etc/sysconfig/kcare/keys/portal.pub")
	conf()

	t.Run("register_update_level2", func(t *testing.T) {
		g.t = t
		g.unpatched()
		r := g.kcarectl("--register " + fleet)
		if r.Exit != 0 {
			t.Fatalf("kcarectl --register: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		if r := g.kcarectl("--update"); r.Exit != 0 || !strings.Contains(r.Stdout, "already applied") {
			t.Errorf("kcarectl --update after registering: exit %d, %q; want level 2 already applied", r.Exit, r.Stdout)
		}
		if got := g.cmdline(); got != cmdlineL2 {
			t.Errorf("/proc/cmdline = %q, want %q", got, cmdlineL2)
		}
		if got := strings.TrimSpace(g.ok("kcarectl --uname")); got != fixture.Effective(release, 2) {
			t.Errorf("kcarectl --uname = %q", got)
		}
		if mode := strings.TrimSpace(g.ok("stat -c %a /etc/sysconfig/kcare/server-secret")); mode != "600" {
			t.Errorf("server secret mode %s, want 600", mode)
		}
		srv := p.servers()
		if len(srv) != 1 || fmt.Sprint(srv[0]["patch_level"]) != "2" || srv[0]["release"] != release || srv[0]["checkin"] == nil {
			t.Errorf("portal's servers after the update: %v", srv)
		}
	})

	t.Run("prefix_48h_skips_new_level", func(t *testing.T) {
		g.t = t
		p.publish(3, time.Now().Add(-time.Hour))
		if r := g.kcarectl("--check"); r.Exit != 0 {
			t.Errorf("kcarectl --check with level 3 out: exit %d, want 0 (available)\n%s", r.Exit, r.Stdout)
		}
		if r := g.kcarectl("--status"); r.Exit != 2 {
			t.Errorf("kcarectl --status: exit %d, want 2 (newer patches not applied)\n%s", r.Exit, r.Stdout)
		}
		r := g.kcarectl("--update --prefix 48h")
		if r.Exit != 0 || g.cmdline() != cmdlineL2 {
			t.Errorf("--update --prefix 48h: exit %d, cmdline %q; want still level 2\n%s%s", r.Exit, g.cmdline(), r.Stdout, r.Stderr)
		}
	})

	t.Run("auto_update_off_does_nothing", func(t *testing.T) {
		g.t = t
		conf("AUTO_UPDATE=False")
		r := g.kcarectl("--auto-update")
		if r.Exit != 0 || r.Stdout != "" || g.cmdline() != cmdlineL2 {
			t.Errorf("--auto-update with AUTO_UPDATE=False: exit %d, stdout %q, cmdline %q; want nothing done", r.Exit, r.Stdout, g.cmdline())
		}
		conf("AUTO_UPDATE=True")
		r = g.kcarectl("--auto-update")
		if r.Exit != 0 || g.cmdline() != "kcare-fixture level 3\n" {
			t.Errorf("--auto-update with AUTO_UPDATE=True: exit %d, cmdline %q; want level 3\n%s", r.Exit, g.cmdline(), r.Stderr)
		}
		if r := g.kcarectl("--status"); r.Exit != 0 {
			t.Errorf("kcarectl --status at the newest level: exit %d, want 0\n%s", r.Exit, r.Stdout)
		}
	})

	t.Run("sticky_key_keeps_level2", func(t *testing.T) {
		g.t = t
		if r := g.kcarectl("--unregister"); r.Exit != 0 {
			t.Fatalf("--unregister: exit %d %s", r.Exit, r.Stderr)
		}
		conf("STICKY_PATCH=KEY")
		r := g.kcarectl("--register " + sticky)
		if r.Exit != 0 {
			t.Fatalf("--register sticky key: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		if got := g.cmdline(); got != cmdlineL2 {
			t.Errorf("/proc/cmdline = %q, want level 2's: the key is sticky before level 3", got)
		}
		if info := g.info(); info.Level != 2 {
			t.Errorf("info level %d, want 2", info.Level)
		}
		if lic := g.ok("kcarectl --license-info"); !strings.Contains(lic, "key: "+sticky) {
			t.Errorf("--license-info = %q, want the sticky key", lic)
		}
	})

	t.Run("eportal_style_conf_registers", func(t *testing.T) { eportalStyleRegister(t, g, p, sticky) })

	t.Run("portal_down_kernel_untouched", func(t *testing.T) {
		g.t = t
		p.stop()
		g.klpLog()
		r := g.kcarectl("--update")
		if r.Exit == 0 || !strings.Contains(r.Stderr, "patch server unreachable") {
			t.Errorf("--update with the portal stopped: exit %d, stderr %q; want a failure naming the unreachable patch server", r.Exit, r.Stderr)
		}
		if got := g.cmdline(); got != cmdlineL2 {
			t.Errorf("/proc/cmdline = %q, want level 2 untouched", got)
		}
		g.wantModules("kcare_test_l2", "kcare_test_l2")
		if log := g.klpLog(); len(log) != 0 {
			t.Errorf("kernel livepatch activity while the portal was down: %q", log)
		}
	})
}

// shellWords quotes words for a POSIX shell.
func shellWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
