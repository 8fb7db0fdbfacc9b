package vm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

// guest wraps a booted VM with the checks the scenarios make.
type guest struct {
	t   *testing.T
	vm  *qemu.VM
	ctx context.Context
}

// startVM boots the fixture's kernel and initramfs, and stops it when the
// test ends (printing the console's end if the test failed).
func startVM(t testing.TB, f *fixture.Fixture, shares []qemu.Share, isolated bool) *qemu.VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.Config{
		Kernel:   f.BootImage(),
		Initrd:   f.Initrd,
		Shares:   shares,
		Isolated: isolated,
	})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console:\n%s", tail(vm.Console(), 60))
		}
		vm.Stop()
	})
	t.Logf("guest answered %s after start", vm.BootTime().Round(time.Millisecond))
	return vm
}

func boot(t *testing.T, f *fixture.Fixture, shares []qemu.Share, isolated bool) *guest {
	t.Helper()
	return &guest{t: t, vm: startVM(t, f, shares, isolated), ctx: context.Background()}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// sh runs a shell script in the guest and returns its result.
func (g *guest) sh(script string) qemu.Result {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(g.ctx, 3*time.Minute)
	defer cancel()
	r, err := g.vm.Shell(ctx, script)
	if err != nil {
		g.t.Fatalf("guest %q: %v", script, err)
	}
	return r
}

// ok runs a script that must succeed and returns its stdout.
func (g *guest) ok(script string) string {
	g.t.Helper()
	r := g.sh(script)
	if r.Exit != 0 {
		g.t.Fatalf("guest %q: exit %d\nstdout: %s\nstderr: %s", script, r.Exit, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

func (g *guest) kcarectl(args string) qemu.Result {
	g.t.Helper()
	return g.sh("kcarectl " + args)
}

type guestInfo struct {
	State            string `json:"state"`
	Level            int    `json:"level"`
	Module           string `json:"module"`
	EffectiveRelease string `json:"effective_release"`
	CachedLevel      int    `json:"cached_level"`
	Livepatches      []string
	Kernel           struct {
		Release string `json:"release"`
		BuildID string `json:"build_id"`
	} `json:"kernel"`
}

func (g *guest) info() guestInfo {
	g.t.Helper()
	var info guestInfo
	out := g.ok("kcarectl --info --json")
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		g.t.Fatalf("kcarectl --info --json: %v\n%s", err, out)
	}
	return info
}

// The observable effects of the fixture levels.
const (
	cmdlineL1 = "kcare-fixture level 1\n"
	cmdlineL2 = "kcare-fixture level 2\n"
	loadavgL2 = "kcare-fixture loadavg level 2\n"
)

var loadavgOriginal = regexp.MustCompile(`^\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+\n$`)

func (g *guest) cmdline() string { g.t.Helper(); return g.ok("cat /proc/cmdline") }
func (g *guest) loadavg() string { g.t.Helper(); return g.ok("cat /proc/loadavg") }

// unpatched checks that no fixture effect is present.
func (g *guest) unpatched() {
	g.t.Helper()
	if c := g.cmdline(); !strings.Contains(c, "console=ttyS0") {
		g.t.Errorf("/proc/cmdline = %q, want the kernel's own command line", c)
	}
	if l := g.loadavg(); !loadavgOriginal.MatchString(l) {
		g.t.Errorf("/proc/loadavg = %q, want the kernel's own", l)
	}
}

// kcareModules lists the kcare modules in /proc/modules and the kcare
// patches in /sys/kernel/livepatch.
func (g *guest) kcareModules() (modules, patches string) {
	g.t.Helper()
	modules = g.ok("cut -d' ' -f1 /proc/modules | grep '^kcare_' | sort | tr '\\n' ' '; true")
	patches = g.ok("ls /sys/kernel/livepatch | tr '\\n' ' '")
	return strings.TrimSpace(modules), strings.TrimSpace(patches)
}

func (g *guest) wantModules(modules, patches string) {
	g.t.Helper()
	m, p := g.kcareModules()
	if m != modules || p != patches {
		g.t.Errorf("kcare modules %q, livepatches %q; want %q, %q", m, p, modules, patches)
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

func TestScenarios(t *testing.T) {
	f := requireVM(t)
	state := t.TempDir()
	shares := []qemu.Share{
		{Tag: "host", HostDir: f.Dir, GuestPath: "/mnt/host"},
		{Tag: "kcarelib", HostDir: filepath.Join(state, "lib"), GuestPath: "/var/lib/kcare"},
		{Tag: "kcarecache", HostDir: filepath.Join(state, "cache"), GuestPath: "/var/cache/kcare"},
	}
	for _, s := range shares[1:] {
		if err := os.MkdirAll(s.HostDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	g := boot(t, f, shares, false)
	release := f.Kernel.Release
	g.klpLog()

	t.Run("1_apply_level1", func(t *testing.T) {
		g.t = t
		g.unpatched()
		if got := strings.TrimSpace(g.ok("kcarectl --uname")); got != release {
			t.Errorf("kcarectl --uname before = %q, want %q", got, release)
		}
		r := g.kcarectl("--apply /mnt/host/l1.kcp")
		if r.Exit != 0 {
			t.Fatalf("kcarectl --apply l1: exit %d: %s", r.Exit, r.Stderr)
		}
		if got := g.cmdline(); got != cmdlineL1 {
			t.Errorf("/proc/cmdline = %q, want %q", got, cmdlineL1)
		}
		if l := g.loadavg(); !loadavgOriginal.MatchString(l) {
			t.Errorf("/proc/loadavg = %q, want the kernel's own at level 1", l)
		}
		g.ok("test -d /sys/kernel/livepatch/kcare_test_l1")
		if got := strings.TrimSpace(g.ok("uname -r")); got != release {
			t.Errorf("uname -r = %q, want %q unchanged", got, release)
		}
		if got, want := strings.TrimSpace(g.ok("kcarectl --uname")), fixture.Effective(release, 1); got != want {
			t.Errorf("kcarectl --uname = %q, want %q", got, want)
		}
		if info := g.info(); info.State != "applied" || info.Level != 1 {
			t.Errorf("info = %+v, want applied level 1", info)
		}
		wantLog(t, g.klpLog(),
			"livepatch: enabling patch 'kcare_test_l1'",
			"livepatch: 'kcare_test_l1': starting patching transition",
			"livepatch: 'kcare_test_l1': patching complete")
	})

	t.Run("2_apply_level2", func(t *testing.T) {
		g.t = t
		r := g.kcarectl("--apply /mnt/host/l2.kcp")
		if r.Exit != 0 {
			t.Fatalf("kcarectl --apply l2: exit %d: %s", r.Exit, r.Stderr)
		}
		if got := g.cmdline(); got != cmdlineL2 {
			t.Errorf("/proc/cmdline = %q, want %q", got, cmdlineL2)
		}
		if got := g.loadavg(); got != loadavgL2 {
			t.Errorf("/proc/loadavg = %q, want %q", got, loadavgL2)
		}
		g.wantModules("kcare_test_l2", "kcare_test_l2")
		if info := g.info(); info.State != "applied" || info.Level != 2 || info.EffectiveRelease != fixture.Effective(release, 2) {
			t.Errorf("info = %+v, want applied level 2", info)
		}
		wantLog(t, g.klpLog(),
			"livepatch: enabling patch 'kcare_test_l2'",
			"livepatch: 'kcare_test_l2': starting patching transition",
			"livepatch: 'kcare_test_l2': patching complete")
	})

	t.Run("3_unload", func(t *testing.T) {
		g.t = t
		r := g.kcarectl("--unload")
		if r.Exit != 0 {
			t.Fatalf("kcarectl --unload: exit %d: %s", r.Exit, r.Stderr)
		}
		g.unpatched()
		g.wantModules("", "")
		if info := g.info(); info.State != "none" || info.Level != 0 || info.EffectiveRelease != release {
			t.Errorf("info = %+v, want none", info)
		}
		wantLog(t, g.klpLog(),
			"livepatch: 'kcare_test_l2': starting unpatching transition",
			"livepatch: 'kcare_test_l2': unpatching complete")
	})

	t.Run("4_klp_vmlinux", func(t *testing.T) {
		g.t = t
		testKlpVmlinux(t, g, f)
	})

	t.Run("5_klp_module_loaded_first", func(t *testing.T) {
		g.t = t
		testKlpModuleLoadedFirst(t, g, f)
	})

	t.Run("6_klp_module_loaded_later", func(t *testing.T) {
		g.t = t
		testKlpModuleLoadedLater(t, g, f)
	})

	t.Run("7_klp_unconverted_refused", func(t *testing.T) {
		g.t = t
		testKlpUnconverted(t, g)
	})

	t.Run("8_refusals", func(t *testing.T) {
		g.t = t
		for _, tt := range []struct{ file, reason string }{
			{"flipped.kcp", "bad signature"},
			{"unknown-key.kcp", "unknown key"},
			{"other-kernel.kcp", "bundle is for another kernel"},
		} {
			r := g.kcarectl("--apply /mnt/host/" + tt.file)
			if r.Exit != 3 || !strings.Contains(r.Stderr, tt.reason) {
				t.Errorf("apply %s: exit %d, stderr %q; want exit 3 naming %q", tt.file, r.Exit, r.Stderr, tt.reason)
			}
			if n := strings.Count(strings.TrimSpace(r.Stderr), "\n"); n != 0 {
				t.Errorf("apply %s: %d lines on stderr, want one: %q", tt.file, n+1, r.Stderr)
			}
			g.wantModules("", "")
		}
		g.unpatched()
		if info := g.info(); info.State != "none" {
			t.Errorf("info = %+v, want none", info)
		}
		if log := g.klpLog(); len(log) != 0 {
			t.Errorf("kernel logged livepatch activity for refused bundles: %q", log)
		}
	})

	t.Run("9_stall_reversed", func(t *testing.T) {
		g.t = t
		if r := g.kcarectl("--apply /mnt/host/l2.kcp"); r.Exit != 0 {
			t.Fatalf("kcarectl --apply l2: exit %d: %s", r.Exit, r.Stderr)
		}
		pid := strings.TrimSpace(g.ok("pauser </dev/null >/dev/null 2>&1 & echo $!"))
		defer g.sh("kill " + pid)
		// Wait until it sleeps in pause().
		g.ok(fmt.Sprintf("for i in $(seq 50); do grep -q '^State:.*S (sleeping)' /proc/%s/status && exit 0; sleep 0.1; done; exit 1", pid))
		g.klpLog()
		r := g.kcarectl("--apply /mnt/host/l3.kcp --transition-timeout 5s")
		if r.Exit != 5 {
			t.Fatalf("kcarectl --apply l3 with a sleeping task: exit %d, want 5\nstderr: %s", r.Exit, r.Stderr)
		}
		if want := fmt.Sprintf("pauser[%s]", pid); !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr does not name the stalled task %s: %q", want, r.Stderr)
		}
		if got := g.cmdline(); got != cmdlineL2 {
			t.Errorf("/proc/cmdline = %q, want level 2's %q", got, cmdlineL2)
		}
		if got := g.loadavg(); got != loadavgL2 {
			t.Errorf("/proc/loadavg = %q, want level 2's %q", got, loadavgL2)
		}
		g.wantModules("kcare_test_l2", "kcare_test_l2")
		if info := g.info(); info.State != "applied" || info.Level != 2 {
			t.Errorf("info = %+v, want applied level 2", info)
		}
		// The kernel reverses the transition in place (its "reversing
		// transition" line is pr_debug): patching never completes.
		log := g.klpLog()
		wantLog(t, log,
			"livepatch: enabling patch 'kcare_test_l3'",
			"livepatch: 'kcare_test_l3': starting patching transition",
			"livepatch: 'kcare_test_l3': starting unpatching transition",
			"livepatch: 'kcare_test_l3': unpatching complete")
		for _, l := range log {
			if l == "livepatch: 'kcare_test_l3': patching complete" {
				t.Errorf("kernel log says level 3 finished patching: %q", log)
			}
		}
	})

	g.vm.Stop()

	t.Run("10_reboot_update_local", func(t *testing.T) {
		g := boot(t, f, shares[1:], true)
		g.unpatched()
		if r := g.sh("wget -q -T 3 -O- http://10.0.2.2:1/ >/dev/null 2>&1"); r.Exit == 0 {
			t.Errorf("the guest reaches the host; want no network")
		}
		if info := g.info(); info.State != "none" || info.CachedLevel != 2 {
			t.Errorf("info after reboot = %+v, want none with cached level 2", info)
		}
		g.ok("mkdir -p /etc/sysconfig/kcare && printf '# boot\\nUPDATE_POLICY=LOCAL\\n' > /etc/sysconfig/kcare/kcare.conf")
		r := g.kcarectl("--update")
		if r.Exit != 0 {
			t.Fatalf("kcarectl --update (LOCAL): exit %d: %s", r.Exit, r.Stderr)
		}
		if got := g.cmdline(); got != cmdlineL2 {
			t.Errorf("/proc/cmdline = %q, want %q", got, cmdlineL2)
		}
		if got := g.loadavg(); got != loadavgL2 {
			t.Errorf("/proc/loadavg = %q, want %q", got, loadavgL2)
		}
		g.wantModules("kcare_test_l2", "kcare_test_l2")
		if info := g.info(); info.State != "applied" || info.Level != 2 {
			t.Errorf("info = %+v, want applied level 2", info)
		}
	})
}
