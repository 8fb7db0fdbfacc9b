package vm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

// rolloutPortal is the portal of TestRollout: its rollout loop runs every
// second, so that a halt or the next wave follows a check-in at once.
func rolloutPortal(t *testing.T, f *fixture.Fixture) *hostPortal {
	t.Helper()
	fp, err := f.NewPortal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fp.ServeArgs = []string{"--rollout-interval", "1s"}
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

// bootGuests boots n guests at once, each with shares.
func bootGuests(t *testing.T, f *fixture.Fixture, n int, shares []qemu.Share) []*guest {
	t.Helper()
	vms := make([]*qemu.VM, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			vms[i], errs[i] = qemu.Start(ctx, qemu.Config{Kernel: f.BootImage(), Initrd: f.Initrd, Shares: shares})
		})
	}
	wg.Wait()
	guests := make([]*guest, n)
	for i, vm := range vms {
		if vm != nil {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("guest %d console:\n%s", i+1, tail(vm.Console(), 40))
				}
				vm.Stop()
			})
		}
		if errs[i] != nil {
			t.Fatalf("boot guest %d: %v", i+1, errs[i])
		}
		t.Logf("guest %d answered %s after start", i+1, vm.BootTime().Round(time.Millisecond))
		guests[i] = &guest{t: t, vm: vm, ctx: context.Background()}
	}
	return guests
}

// rolloutLine is a line of eportal rollout list.
var rolloutLine = regexp.MustCompile(`(?m)^(\d+)\s+main\s+(\S+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(true|false)\s+(.*)$`)

type rolloutRow struct {
	id, patchset, state, wave, reason string
}

// rollouts lists the portal's rollouts, newest first.
func (p *hostPortal) rollouts() []rolloutRow {
	p.t.Helper()
	var out []rolloutRow
	for _, m := range rolloutLine.FindAllStringSubmatch(p.eportal("", "rollout", "list"), -1) {
		out = append(out, rolloutRow{id: m[1], patchset: m[2], state: m[3], wave: m[4], reason: strings.TrimSpace(m[7])})
	}
	return out
}

// waitRollout waits up to a minute for the newest rollout to be in state
// at wave (1 is the first), and returns it.
func (p *hostPortal) waitRollout(state, wave string) rolloutRow {
	p.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		rs := p.rollouts()
		if len(rs) > 0 && rs[0].state == state && rs[0].wave == wave {
			return rs[0]
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waited a minute for the newest rollout to be %s at wave %s; rollouts: %+v\n%s", state, wave, rs,
				p.eportal("", "rollout", "show", rs[0].id))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waves maps each server id to its wave (1, 2) in a rollout, from
// eportal rollout show.
func (p *hostPortal) waves(id string) map[string]string {
	p.t.Helper()
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([0-9a-f]{24})\s+(\d+)\s`).FindAllStringSubmatch(p.eportal("", "rollout", "show", id), -1) {
		out[m[1]] = m[2]
	}
	return out
}

func (g *guest) serverID() string {
	g.t.Helper()
	return strings.TrimSpace(g.ok("cat /etc/sysconfig/kcare/systemid"))
}

// TestRollout: two guests on one key, the main feed rolling out in waves
// of 50% and 100%. A level that logs a kernel warning as it is applied
// reaches the canary alone; the portal halts the rollout and rolls it
// back by itself, the second guest never receives the level, and the
// canary is ordered back to level 1. A healthy level then goes through
// both waves to both guests, each waiting for the key's maintenance
// window under --auto-update, and applied at once by --update.
func TestRollout(t *testing.T) {
	f := requireVM(t)
	p := rolloutPortal(t, f)
	now := time.Now()
	p.publish(1, now.Add(-72*time.Hour))
	key := p.eportal("", "key", "add", "--note", "rollout")

	share, err := os.MkdirTemp("", "kcare-rollout-share-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(share)
	pub, _ := os.ReadFile(filepath.Join(p.Data, "portal.pub"))
	os.WriteFile(filepath.Join(share, "portal.pub"), pub, 0o644)
	guests := bootGuests(t, f, 2, []qemu.Share{{Tag: "host", HostDir: share, GuestPath: "/mnt/host"}})
	for _, g := range guests {
		g.ok("cp /mnt/host/portal.pub /etc/sysconfig/kcare/keys/portal.pub")
		g.ok(fmt.Sprintf("mkdir -p /etc/sysconfig/kcare && printf '%%s\\n' %s > /etc/sysconfig/kcare/kcare.conf", shellWords([]string{
			"PATCH_SERVER=" + p.GuestURL(), "AUTO_UPDATE=True", "AUTO_UPDATE_DELAY=0",
		})))
		if r := g.kcarectl("--register " + key); r.Exit != 0 || g.cmdline() != cmdlineL1 {
			t.Fatalf("kcarectl --register: exit %d, cmdline %q\n%s%s", r.Exit, g.cmdline(), r.Stdout, r.Stderr)
		}
		g.klpLog()
	}
	p.eportal("", "rollout", "policy", "main", "--waves", "50,100", "--soak", "3s")

	var canary, second *guest
	t.Run("warning_halts_and_rolls_back", func(t *testing.T) {
		for _, g := range guests {
			g.t = t
		}
		if err := p.PublishFile(f.Path("warn.kcp"), now.Add(-48*time.Hour)); err != nil {
			t.Fatal(err)
		}
		rs := p.rollouts()
		if len(rs) != 1 || rs[0].state != "running" || rs[0].wave != "1" {
			t.Fatalf("rollouts after publishing the level: %+v", rs)
		}
		waves := p.waves(rs[0].id)
		for _, g := range guests {
			switch waves[g.serverID()] {
			case "1":
				canary = g
			case "2":
				second = g
			}
		}
		if canary == nil || second == nil {
			t.Fatalf("the rollout's waves %v hold not one guest each", waves)
		}
		for _, g := range []*guest{second, canary} {
			g.kcarectl("--update")
		}
		if got := second.cmdline(); got != cmdlineL1 {
			t.Errorf("the second wave's guest before its wave: /proc/cmdline %q, want level 1's", got)
		}
		canary.wantModules("kcare_test_warn", "kcare_test_warn")
		if dmesg := canary.ok("dmesg | grep -c 'kcare-fixture level 2 warns as it is applied'; true"); strings.TrimSpace(dmesg) != "1" {
			t.Errorf("the canary's kernel logged the warning %s times, want once", strings.TrimSpace(dmesg))
		}

		want := "1 new kernel warning (at most 0), 1 server with a new taint (at most 0)"
		if r := p.waitRollout("rolled-back", "1"); r.reason != want {
			t.Errorf("the halted rollout's reason %q, want %q", r.reason, want)
		}
		r := canary.kcarectl("--update")
		wantOrder := "the portal orders a rollback from level 2 to level 1: the rollout of " + p.rollouts()[0].patchset +
			" in feed main was rolled back: " + want
		if r.Exit != 0 || !strings.Contains(r.Stderr, wantOrder) {
			t.Errorf("the canary's --update after the halt: exit %d, stderr %q; want the order %q", r.Exit, r.Stderr, wantOrder)
		}
		if got := canary.cmdline(); got != cmdlineL1 {
			t.Errorf("the canary after the rollback: /proc/cmdline %q, want level 1's", got)
		}
		canary.wantModules("kcare_test_l1", "kcare_test_l1")
		if info := canary.info(); info.Level != 1 {
			t.Errorf("the canary's kcarectl --info: level %d, want 1", info.Level)
		}

		// The second guest never receives the level.
		second.kcarectl("--update")
		if got := second.cmdline(); got != cmdlineL1 {
			t.Errorf("the second guest after the halt: /proc/cmdline %q, want level 1's", got)
		}
		second.wantModules("kcare_test_l1", "kcare_test_l1")
		if log := second.klpLog(); len(log) != 0 {
			t.Errorf("livepatch activity on the second guest: %q", log)
		}
		levels := map[string]string{}
		for _, s := range p.servers() {
			levels[fmt.Sprint(s["id"])] = fmt.Sprint(s["patch_level"])
		}
		if levels[canary.serverID()] != "1" || levels[second.serverID()] != "1" {
			t.Errorf("the portal's levels of the guests: %v, want both 1", levels)
		}
	})
	if canary == nil {
		return
	}

	t.Run("healthy_level_through_both_waves_in_the_window", func(t *testing.T) {
		for _, g := range guests {
			g.t = t
		}
		// A window that opens in two hours: --auto-update waits for it.
		start := time.Now().UTC().Add(2 * time.Hour).Truncate(time.Hour)
		spec := fmt.Sprintf("* %02d:00-%02d:00", start.Hour(), start.Add(time.Hour).Hour())
		p.eportal("", "key", "window", key, spec)
		p.publish(3, now.Add(-24*time.Hour))
		rs := p.rollouts()
		if len(rs) != 2 || rs[0].state != "running" || rs[0].wave != "1" {
			t.Fatalf("rollouts after publishing level 3: %+v", rs)
		}
		if w := p.waves(rs[0].id); w[canary.serverID()] != "1" {
			t.Errorf("the canary's wave in the second rollout: %q, want 1 (a server's wave stays)", w[canary.serverID()])
		}
		r := canary.kcarectl("--auto-update")
		if r.Exit != 0 || !strings.Contains(r.Stderr, "level 3 waits for the maintenance window, "+start.Format(time.RFC3339)) || canary.cmdline() != cmdlineL1 {
			t.Errorf("--auto-update outside the window: exit %d, stderr %q, cmdline %q; want level 1 kept", r.Exit, r.Stderr, canary.cmdline())
		}
		if r := canary.kcarectl("--update"); r.Exit != 0 || canary.cmdline() != "kcare-fixture level 3\n" {
			t.Errorf("--update by hand outside the window: exit %d, cmdline %q; want level 3\n%s", r.Exit, canary.cmdline(), r.Stderr)
		}
		p.waitRollout("running", "2")
		if r := second.kcarectl("--auto-update"); r.Exit != 0 || second.cmdline() != cmdlineL1 {
			t.Errorf("the second guest's --auto-update in its wave, outside the window: exit %d, cmdline %q; want level 1 kept", r.Exit, second.cmdline())
		}
		p.eportal("", "key", "window", key, "* 00:00-24:00")
		if r := second.kcarectl("--auto-update"); r.Exit != 0 || second.cmdline() != "kcare-fixture level 3\n" {
			t.Errorf("the second guest's --auto-update inside the window: exit %d, cmdline %q; want level 3\n%s", r.Exit, second.cmdline(), r.Stderr)
		}
		if r := p.waitRollout("done", "2"); r.reason != "every wave is through" {
			t.Errorf("the healthy rollout's end: %q", r.reason)
		}
		for _, s := range p.servers() {
			if fmt.Sprint(s["patch_level"]) != "3" {
				t.Errorf("the portal's server %v at level %v, want 3", s["id"], s["patch_level"])
			}
		}
	})
}
