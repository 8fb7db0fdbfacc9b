package faults_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/faultpoint"
)

// The apply's fault points, and the level kcarectl --update from level 1
// to 2 leaves in effect and recorded when stopped at each: before
// finit_module nothing changed; after it, the kernel has level 2 and the
// next kcarectl records it. A power cut before the record leaves level 1
// recorded, and the boot-time apply re-applies it.
var applyPoints = []struct {
	point               string
	afterKill, afterCut int
}{
	{faultpoint.AfterVerify, 1, 1},
	{faultpoint.CacheWrite, 1, 1},
	{faultpoint.AfterLoad, 2, 1},
	{faultpoint.AfterRecord, 2, 2},
	{faultpoint.RemoveReplaced, 2, 2},
}

// dropCachedL2 removes level 2 from the cache, so that the update's
// cache write is done, and can be stopped in the middle.
const dropCachedL2 = "rm -f /var/cache/kcare/*/level-2.kcp /var/cache/kcare/*/level-2.kcp.sig"

// TestAgentFaults runs kcarectl on a real kernel in QEMU with its state
// on a disk that keeps what was written to it across power cuts, and
// stops it at each fault point: killed (the next kcarectl --info,
// --update and the boot-time apply follow on the same kernel), and with
// the power cut there (the boot-time apply, --info and --update follow
// on the next boot). Then full disks, damaged caches and records, a
// clock a year off, a portal restarting and connections cut mid-bundle,
// and two kcarectl at once. After each case the kernel and the record
// agree (machine.agree).
func TestAgentFaults(t *testing.T) {
	f := requireVM(t)
	dir := t.TempDir()
	p, err := f.NewPortal(filepath.Join(dir, "portal"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("eportal log:\n%s", tail(p.Log(), 30))
		}
	})
	now := time.Now()
	for level := 1; level <= 2; level++ {
		if err := p.Publish(level, now.Add(time.Duration(-80+10*level)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	key, err := p.Eportal("", "key", "add", "--note", "faults")
	if err != nil {
		t.Fatal(err)
	}
	share := filepath.Join(dir, "share")
	os.MkdirAll(share, 0o755)
	for _, name := range []string{"l1.kcp", "l2.kcp", "l3.kcp"} {
		for _, n := range []string{name, name + ".sig"} {
			copyFile(t, f.Path(n), filepath.Join(share, n))
		}
	}
	copyFile(t, filepath.Join(p.Data, "portal.pub"), filepath.Join(share, "portal.pub"))
	proxy := startProxy(t, p.URL(), func() {
		p.Stop()
		if err := p.Start(); err != nil {
			t.Errorf("restart eportal: %v", err)
		}
	})

	m := newMachine(t, f, share)
	m.boot(t)
	m.kcareConf("# kcare, set by the fault tests", "PATCH_SERVER="+proxy.guestURL(), "TRANSITION_TIMEOUT=5s", "AUTO_UPDATE_DELAY=0")
	m.mustKcarectl("--register " + key)
	m.agree("after --register", 2)

	for _, ap := range applyPoints {
		t.Run("kill/"+ap.point, func(t *testing.T) {
			m.t = t
			m.setLevel(1)
			m.ok(dropCachedL2)
			if r := m.kcarectl(ap.point+":kill", "--update"); r.Exit != 137 {
				t.Fatalf("kcarectl --update killed at %s: exit %d, want 137 (SIGKILL)\n%s", ap.point, r.Exit, r.Stderr)
			}
			m.mustKcarectl("--info")
			m.agree("after kcarectl --info", ap.afterKill)
			m.mustKcarectl("--update")
			m.agree("after kcarectl --update", 2)
			if r := m.bootApply(); r.Exit != 0 {
				t.Errorf("boot-time apply: exit %d\n%s", r.Exit, r.Stderr)
			}
			m.agree("after the boot-time apply", 2)
		})
	}
	t.Run("kill/unload", func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		if r := m.kcarectl(faultpoint.Unload+":kill", "--unload"); r.Exit != 137 {
			t.Fatalf("kcarectl --unload killed: exit %d, want 137\n%s", r.Exit, r.Stderr)
		}
		r := m.mustKcarectl("--info")
		wantStderr(t, "kcarectl --info after the killed unload", r, 0, `(?m)^kcarectl: finishing an unload that was interrupted$`)
		m.agree("after kcarectl --info", 0)
		if s := m.snapshot(); s.state != nil {
			t.Errorf("the record still names level %d after the unload was finished", s.state.Manifest.Level)
		}
		m.mustKcarectl("--update")
		m.agree("after kcarectl --update", 2)
	})

	for _, ap := range applyPoints {
		t.Run("powercut/"+ap.point, func(t *testing.T) {
			m.t = t
			m.setLevel(1)
			m.ok(dropCachedL2)
			m.hang(ap.point, "--update")
			m.powerCut(t)
			if r := m.bootApply(); r.Exit != 0 {
				t.Errorf("boot-time apply: exit %d\n%s", r.Exit, r.Stderr)
			}
			m.agree("after the boot-time apply", ap.afterCut)
			m.mustKcarectl("--update")
			m.agree("after kcarectl --update", 2)
		})
	}
	t.Run("powercut/unload", func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		m.hang(faultpoint.Unload, "--unload")
		m.powerCut(t)
		// As after any unload, the boot-time apply re-applies the cached level.
		if r := m.bootApply(); r.Exit != 0 {
			t.Errorf("boot-time apply: exit %d\n%s", r.Exit, r.Stderr)
		}
		m.agree("after the boot-time apply", 2)
	})

	if err := p.Publish(3, now.Add(-50*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// pauser sleeps in the function level 3 patches: its transition
	// cannot finish while it runs.
	pauser := func() string {
		pid := strings.TrimSpace(m.ok("pauser </dev/null >/dev/null 2>&1 & echo $!"))
		m.ok(fmt.Sprintf("for i in $(seq 50); do grep -q '^State:.*S (sleeping)' /proc/%s/status && exit 0; sleep 0.1; done; exit 1", pid))
		return pid
	}
	t.Run("kill/"+faultpoint.TransitionWait, func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		pid := pauser()
		if r := m.kcarectl(faultpoint.TransitionWait+":kill", "--update"); r.Exit != 137 {
			t.Fatalf("kcarectl --update killed in the transition: exit %d, want 137\n%s", r.Exit, r.Stderr)
		}
		r := m.mustKcarectl("--info")
		wantStderr(t, "kcarectl --info after the kill", r, 0, `(?m)^kcarectl: reversed the transition of kcare_test_l3$`)
		m.agree("after kcarectl --info", 2)
		m.ok("kill " + pid)
		m.mustKcarectl("--update")
		m.agree("after kcarectl --update", 3)
	})
	t.Run("powercut/"+faultpoint.TransitionWait, func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		pauser()
		m.hang(faultpoint.TransitionWait, "--update")
		m.powerCut(t)
		if r := m.bootApply(); r.Exit != 0 {
			t.Errorf("boot-time apply: exit %d\n%s", r.Exit, r.Stderr)
		}
		m.agree("after the boot-time apply", 2)
		m.mustKcarectl("--update")
		m.agree("after kcarectl --update", 3)
	})

	t.Run("two_at_once", func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		// The first holds the lock for 3s once its module is loaded.
		m.ok("(" + faultpoint.Env + "=" + faultpoint.AfterLoad + ":sleep=3s kcarectl --update; echo exit=$?) >/tmp/first.out 2>&1 </dev/null &")
		m.ok("for i in $(seq 100); do test -e /var/lib/kcare/pending.json && exit 0; sleep 0.05; done; exit 1")
		second := m.kcarectl("", "--update")
		first := m.ok("while ! grep -q '^exit=' /tmp/first.out; do sleep 0.1; done; cat /tmp/first.out")
		if !strings.Contains(first, "exit=0") {
			t.Errorf("the first kcarectl --update: %s", first)
		}
		if second.Exit != 0 || second.Stdout != "Level 3 is already applied\n" {
			t.Errorf("the second kcarectl --update, which waited for the lock: exit %d, stdout %q, stderr %q", second.Exit, second.Stdout, second.Stderr)
		}
		if n := enablings(m.klpLog()); n != 1 {
			t.Errorf("the kernel enabled a patch %d times, want once", n)
		}
		m.agree("after both", 3)
	})

	t.Run("cut_mid_bundle", func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		proxy.set(cutOnce)
		m.mustKcarectl("--update")
		if blobs, cuts, _ := proxy.counts(); blobs != 2 || cuts != 1 {
			t.Errorf("%d bundle requests, %d cut; want 2, 1", blobs, cuts)
		}
		m.agree("after the update", 3)
	})
	t.Run("portal_restart_mid_download", func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		proxy.set(restartOnce)
		m.mustKcarectl("--update")
		if _, _, restarts := proxy.counts(); restarts != 1 {
			t.Errorf("the portal restarted %d times, want once", restarts)
		}
		m.agree("after the update", 3)
	})
	t.Run("cut_every_time", func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		proxy.set(cutAlways)
		r := m.kcarectl("", "--update")
		proxy.set(passThrough)
		wantStderr(t, "kcarectl --update with every bundle cut", r, 1,
			`(?m)^kcarectl: patch server unreachable: download /blobs/sha256/[0-9a-f]{64}: cut off after \d+ of \d+ bytes, 3 times: unexpected EOF$`)
		if log := m.klpLog(); len(log) != 0 {
			t.Errorf("kernel livepatch activity: %q", log)
		}
		m.agree("after the failed update", 2)
	})

	hostClock := func() { m.ok("date -u -s '" + time.Now().UTC().Format("2006-01-02 15:04:05") + "' >/dev/null") }
	skew := func(d time.Duration) {
		m.ok("date -u -s '" + time.Now().Add(d).UTC().Format("2006-01-02 15:04:05") + "' >/dev/null")
	}
	year := 365 * 24 * time.Hour
	t.Run("clock_a_year_ahead", func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		skew(year)
		r := m.kcarectl("", "--update")
		hostClock()
		wantStderr(t, "kcarectl --update with the clock a year ahead", r, 1,
			`(?m)^kcarectl: verify index: index expired at \S+, 36\d days ago by this host's clock \(\S+\); `+
				`an index is good from its issue time \(\S+, less 5m0s of clock skew\) until it expires: check this host's clock$`)
		if log := m.klpLog(); len(log) != 0 {
			t.Errorf("kernel livepatch activity: %q", log)
		}
		m.agree("after the refused update", 2)
	})
	t.Run("clock_a_year_behind", func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		skew(-year)
		r := m.kcarectl("", "--update")
		hostClock()
		wantStderr(t, "kcarectl --update with the clock a year behind", r, 1,
			`(?m)^kcarectl: verify index: index issued in the future: signed at \S+, 365 days ahead of this host's clock \(\S+\), more than the 5m0s allowed; `+
				`an index is good from its issue time \(less 5m0s of clock skew\) until it expires: check this host's clock$`)
		if log := m.klpLog(); len(log) != 0 {
			t.Errorf("kernel livepatch activity: %q", log)
		}
		m.agree("after the refused update", 2)
	})
	t.Run("boot_apply_clock_a_year_behind", func(t *testing.T) {
		m.t = t
		m.setLevel(2)
		m.powerCut(t)
		skew(-year)
		r := m.bootApply()
		hostClock()
		if r.Exit != 0 {
			t.Errorf("boot-time apply with the clock a year behind: exit %d\n%s", r.Exit, r.Stderr)
		}
		m.agree("after the boot-time apply", 2)
	})

	t.Run("corrupt_cache_in_effect", func(t *testing.T) {
		for _, c := range []struct{ name, script string }{
			{"garbage", `echo garbage > "$b"`},
			{"other_bundle", `cp /mnt/host/l2.kcp "$b" && cp /mnt/host/l2.kcp.sig "$b.sig"`},
		} {
			t.Run(c.name, func(t *testing.T) {
				m.t = t
				m.setLevel(3)
				b := "/var/cache/kcare/" + m.snapshot().state.Bundle
				m.ok("b=" + b + "; " + c.script)
				r := m.kcarectl("", "--update")
				wantStderr(t, "kcarectl --update with the cache damaged", r, 0, `(?m)^kcarectl: level 3 is applied, but its cached bundle is not usable \(.*\); fetching it again$`)
				if log := m.klpLog(); len(log) != 0 {
					t.Errorf("kernel livepatch activity while mending the cache: %q", log)
				}
				m.agree("after the update", 3)
			})
		}
	})
	t.Run("corrupt_state", func(t *testing.T) {
		m.t = t
		m.setLevel(3)
		m.ok(`printf '{"manifest": {"lev' > /var/lib/kcare/state.json`)
		r := m.mustKcarectl("--info")
		wantStderr(t, "kcarectl --info with state.json truncated", r, 0,
			`(?m)^kcarectl: /var/lib/kcare/state.json is unreadable \(unexpected end of JSON input\); set aside as state.json.corrupt\n`+
				`kcarectl: recorded level 3 \(kcare_test_l3\), in effect in the kernel, from its verified cached bundle \S+/level-3.kcp$`)
		m.agree("after kcarectl --info", 3)
	})
	t.Run("corrupt_cache_at_boot", func(t *testing.T) {
		m.t = t
		m.setLevel(3)
		b := "/var/cache/kcare/" + m.snapshot().state.Bundle
		m.ok("truncate -s 1000 " + b + " && sync")
		m.powerCut(t)
		r := m.bootApply()
		wantStderr(t, "boot-time apply of a truncated cache", r, 3,
			`(?m)^kcarectl: module digest mismatch: the cached bundle \S+ has sha256 [0-9a-f]{64}, the record says [0-9a-f]{64}; kcarectl --update fetches it again$`)
		if s := m.snapshot(); len(s.modules) != 0 || len(s.patches) != 0 {
			t.Errorf("loaded from a damaged cache: modules %q, patches %q", s.modules, s.patches)
		}
		m.mustKcarectl("--update")
		m.agree("after kcarectl --update", 3)
	})

	t.Run("disk_full", func(t *testing.T) {
		m.t = t
		testDiskFull(t, m)
	})
}

// testDiskFull moves /var/lib/kcare and then /var/cache/kcare onto a
// small tmpfs, fills it to leave a little room, and applies level 2 over
// level 1 with each room: the apply fails before the kernel changes, or
// completes with the record written; never a patched kernel with no
// record. Level 1 is in effect when it ends, on the disk as well.
func testDiskFull(t *testing.T, m *machine) {
	m.setLevel(1)
	bundleKB := len(mustRead(t, filepath.Join(m.share, "l2.kcp")))/1024 + 1
	m.ok(`for d in /var/lib/kcare /var/cache/kcare; do
		mkdir -p /tmp/full$d && cp -a $d/. /tmp/full$d/
		mount -t tmpfs -o size=4m tmpfs $d && cp -a /tmp/full$d/. $d/
	done`)
	defer func() {
		m.ok("rm -f /var/lib/kcare/filler /var/cache/kcare/filler")
		m.setLevel(1)
		m.ok("umount /var/lib/kcare && umount /var/cache/kcare")
	}()
	type room struct {
		dir string
		kb  []int
	}
	for _, r := range []room{
		{"/var/lib/kcare", []int{0, 4, 8, 12, 16, 32}},
		{"/var/cache/kcare", []int{0, 4, bundleKB / 2, bundleKB + 8, bundleKB + 16}},
	} {
		failed, done := 0, 0
		for _, kb := range r.kb {
			m.ok("rm -f /var/lib/kcare/filler /var/cache/kcare/filler")
			m.setLevel(1)
			m.ok(dropCachedL2)
			avail, _ := strconv.Atoi(strings.TrimSpace(m.ok("df -k " + r.dir + " | awk 'NR == 2 { print $4 }'")))
			if avail > kb {
				m.ok(fmt.Sprintf("dd if=/dev/zero of=%s/filler bs=1k count=%d 2>/dev/null; true", r.dir, avail-kb))
			}
			res := m.kcarectl("", "--apply /mnt/host/l2.kcp")
			when := fmt.Sprintf("--apply with %d KiB left in %s", kb, r.dir)
			if res.Exit == 0 {
				done++
				m.agree(when, 2)
				continue
			}
			failed++
			if !strings.Contains(res.Stderr, "no space left on device") {
				t.Errorf("%s: exit %d, stderr %q; want it to say no space left on device", when, res.Exit, res.Stderr)
			}
			if log := m.klpLog(); len(log) != 0 {
				t.Errorf("%s: failed, after kernel livepatch activity %q", when, log)
			}
			m.agree(when, 1)
		}
		t.Logf("%s: %d applies failed for want of room, %d completed", r.dir, failed, done)
		if failed == 0 || done == 0 {
			t.Errorf("%s: %d applies failed and %d completed; the rooms tried should give both", r.dir, failed, done)
		}
	}
	// --update records the index first: with no room, it fails there.
	m.ok("rm -f /var/lib/kcare/filler /var/cache/kcare/filler")
	m.setLevel(1)
	m.ok("dd if=/dev/zero of=/var/lib/kcare/filler bs=1k count=8192 2>/dev/null; true")
	r := m.kcarectl("", "--update")
	wantStderr(t, "kcarectl --update with /var/lib/kcare full", r, 1, `no space left on device`)
	m.agree("after the update on a full disk", 1)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b := mustRead(t, from)
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
