package server_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/rollout"
	"github.com/kcare/kcare/internal/portal/store"
)

// run is one run of the host's agent as kcarectl makes it: its check-in
// (with the kernel's health) and the index question in one request, the
// update, and a check-in after it when the level changed or it failed.
func (h *host) run(t *testing.T) (int, error) {
	t.Helper()
	ctx := context.Background()
	h.c.Report = h.report(t, nil)
	before := h.level(t)
	_, err := h.a.Update(ctx, h.c, agent.UpdateOptions{})
	if after := h.level(t); after != before || err != nil && !errors.Is(err, agent.ErrNothingToDo) || h.c.Report != nil {
		if cerr := h.c.CheckIn(ctx, *h.report(t, err)); cerr != nil {
			t.Fatalf("check-in: %v", cerr)
		}
	}
	return h.level(t), err
}

func (h *host) level(t *testing.T) int {
	t.Helper()
	info, err := h.a.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.Level
}

func (h *host) report(t *testing.T, runErr error) *apitype.CheckIn {
	t.Helper()
	info, err := h.a.Info()
	if err != nil {
		t.Fatal(err)
	}
	result := "ok"
	if runErr != nil && !errors.Is(runErr, agent.ErrNothingToDo) {
		result = runErr.Error()
	}
	tel, err := h.a.Telemetry()
	if err != nil {
		t.Fatal(err)
	}
	return &apitype.CheckIn{Hostname: "web1", Release: fakekernel.Release, BuildID: fakekernel.BuildID,
		KernelID: kernel.KernelID(fakekernel.Version), Level: info.Level, EffectiveRelease: info.EffectiveRelease,
		Result: result, AgentVersion: "0.1.0", Telemetry: tel}
}

// rolloutPortal is a portal with two hosts on one key, both at level 1,
// and the main feed rolling out in waves of 50% and 100%, soaking an
// hour, with auto-rollback.
func rolloutPortal(t *testing.T, kind string) (*portal, []*host) {
	t.Helper()
	p := newPortal(t, kind)
	p.addKey(t, store.Key{Key: "fleet"})
	p.mustPublish(t, 1, p.now.Add(-72*time.Hour))
	hosts := []*host{p.newHost(t), p.newHost(t)}
	for _, h := range hosts {
		h.register(t, "fleet")
		if level, err := h.run(t); level != 1 || err != nil {
			t.Fatalf("first run: level %d, %v", level, err)
		}
	}
	pol := rollout.DefaultPolicy()
	pol.Waves, _ = rollout.ParseWaves("50,100")
	pol.Soak = rollout.Duration(time.Hour)
	if err := p.srv.Core().SetRolloutPolicy(context.Background(), core.CLI, "main", pol); err != nil {
		t.Fatal(err)
	}
	return p, hosts
}

// tick runs the rollout loop once.
func (p *portal) tick(t *testing.T) {
	t.Helper()
	if err := p.srv.Core().RolloutTick(context.Background()); err != nil {
		t.Fatalf("rollout tick: %v", err)
	}
}

// rolloutOf returns the rollout of patchset in main.
func (p *portal) rolloutOf(t *testing.T, patchset string) *core.RolloutStatus {
	t.Helper()
	rs, err := p.srv.Core().Rollouts(context.Background(), "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Patchset == patchset {
			st, err := p.srv.Core().Rollout(context.Background(), r.ID)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	}
	t.Fatalf("no rollout of %s in main among %+v", patchset, rs)
	return nil
}

// canaryFirst orders hosts as the rollout's waves take them.
func canaryFirst(t *testing.T, st *core.RolloutStatus, hosts []*host) []*host {
	t.Helper()
	if len(st.Servers) != 2 || st.Servers[0].Wave != 0 || st.Servers[1].Wave != 1 {
		t.Fatalf("rollout's servers = %+v, want one in each wave", st.Servers)
	}
	out := slices.Clone(hosts)
	if hosts[0].c.ServerID != st.Servers[0].ID {
		out[0], out[1] = hosts[1], hosts[0]
	}
	return out
}

// TestRolloutWaves: a healthy patchset reaches the canary's wave first,
// the other server once the canary's wave has soaked and checked in with
// it, and the rollout is then done; each step in the audit log.
func TestRolloutWaves(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p, hosts := rolloutPortal(t, kind)
		p.mustPublish(t, 2, p.now.Add(-time.Hour))
		p.tick(t)
		st := p.rolloutOf(t, "K20261127_01")
		if st.State != "running" || st.Wave != 0 || !st.Started.Equal(p.now) {
			t.Fatalf("new rollout: %s at wave %d from %v", st.State, st.Wave, st.Started)
		}
		hs := canaryFirst(t, st, hosts)
		canary, other := hs[0], hs[1]
		if level, err := other.run(t); level != 1 || !errors.Is(err, agent.ErrNothingToDo) {
			t.Errorf("the second wave's server before its wave: level %d, %v; want level 1, nothing to do", level, err)
		}
		if level, err := canary.run(t); level != 2 || err != nil {
			t.Fatalf("the canary: level %d, %v; want level 2", level, err)
		}
		p.tick(t)
		if st := p.rolloutOf(t, "K20261127_01"); st.Wave != 0 || st.Decision.Reason != "soaking until 2026-11-27T11:00:00Z" {
			t.Errorf("within the soak: wave %d, %q", st.Wave, st.Decision.Reason)
		}
		p.now = p.now.Add(61 * time.Minute)
		p.tick(t)
		if st := p.rolloutOf(t, "K20261127_01"); st.Wave != 1 || st.State != "running" {
			t.Fatalf("after the soak: %s at wave %d (%s)", st.State, st.Wave, st.Decision.Reason)
		}
		if level, err := other.run(t); level != 2 || err != nil {
			t.Fatalf("the second wave's server in its wave: level %d, %v; want level 2", level, err)
		}
		p.now = p.now.Add(61 * time.Minute)
		canary.run(t)
		p.tick(t)
		if st := p.rolloutOf(t, "K20261127_01"); st.State != "done" || st.Reason != "every wave is through" {
			t.Errorf("after the last wave: %s, %q", st.State, st.Reason)
		}
		entries, _ := p.st.AuditQuery(context.Background(), store.AuditFilter{Action: "rollout."})
		var got []string
		for _, e := range entries {
			got = append(got, e.Actor+" "+e.Action+" "+e.Detail)
		}
		slices.Reverse(got)
		want := []string{
			"rollout rollout.advance K20261127_01 in feed main: running at wave 2; wave 1 (50%) healthy: 1 of 1 servers have the level",
			"rollout rollout.done K20261127_01 in feed main: done at wave 2; every wave is through",
		}
		if !slices.Equal(got, want) {
			t.Errorf("audit log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// TestRolloutHaltsAndRollsBack: a patchset whose apply logs a kernel
// warning on the canary halts the rollout by itself; the other server
// never gets it, and the canary is ordered back to the level below with
// a signed order saying why.
func TestRolloutHaltsAndRollsBack(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p, hosts := rolloutPortal(t, kind)
		p.mustPublish(t, 2, p.now.Add(-time.Hour))
		p.tick(t)
		hs := canaryFirst(t, p.rolloutOf(t, "K20261127_01"), hosts)
		canary, other := hs[0], hs[1]
		canary.k.WarnOnLoad("kcare_test_l2")
		if level, err := canary.run(t); level != 2 || err != nil {
			t.Fatalf("the canary: level %d, %v; want level 2", level, err)
		}
		p.tick(t)
		st := p.rolloutOf(t, "K20261127_01")
		wantReason := "1 new kernel warning (at most 0), 1 server with a new taint (at most 0)"
		if st.State != "rolled-back" || st.Reason != wantReason {
			t.Fatalf("after the canary's warning: %s, %q; want rolled-back, %q", st.State, st.Reason, wantReason)
		}
		if w := st.Decision.Waves[0]; w.Warnings != 1 || w.Taints != 1 || w.Applied != 1 {
			t.Errorf("wave 1's signals = %+v", w)
		}
		// The canary's next index orders it back, saying why.
		body, _, err := canary.c.Index(context.Background(), fakekernel.BuildID, "", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"from": 2`, `"reason": "the rollout of K20261127_01 in feed main was rolled back: ` + wantReason + `"`} {
			if !strings.Contains(string(body), want) {
				t.Errorf("the canary's index lacks %s:\n%s", want, body)
			}
		}
		if level, err := canary.run(t); level != 1 || err != nil {
			t.Errorf("the canary after the halt: level %d, %v; want level 1", level, err)
		}
		p.now = p.now.Add(5 * time.Hour)
		p.tick(t)
		if level, err := other.run(t); level != 1 || !errors.Is(err, agent.ErrNothingToDo) {
			t.Errorf("the other server after the halt: level %d, %v; want level 1", level, err)
		}
		if n := other.k.Loads(); n != 1 {
			t.Errorf("the other server loaded %d modules, want 1 (level 1 only)", n)
		}
		e, _ := p.st.AuditQuery(context.Background(), store.AuditFilter{Action: "rollout.halt"})
		if len(e) != 1 || e[0].Actor != "rollout" || e[0].Detail != "K20261127_01 in feed main: rolled-back at wave 1; "+wantReason {
			t.Errorf("audit of the halt: %+v", e)
		}
	})
}

// TestRolloutOperatorActions: pause stops the waves advancing, resume
// starts the soak again, promote moves on without waiting, rollback
// orders every server back; each refused in a state that does not allow
// it.
func TestRolloutOperatorActions(t *testing.T) {
	p, hosts := rolloutPortal(t, "sqlite")
	c := p.srv.Core()
	ctx := context.Background()
	p.mustPublish(t, 2, p.now.Add(-time.Hour))
	p.tick(t)
	id := p.rolloutOf(t, "K20261127_01").ID
	act := func(a rollout.Action) error {
		_, err := c.RolloutAction(ctx, core.CLI, id, a)
		return err
	}
	for _, h := range hosts {
		h.run(t)
	}
	if err := act(rollout.Pause); err != nil {
		t.Fatal(err)
	}
	p.now = p.now.Add(2 * time.Hour)
	for _, h := range hosts {
		h.run(t)
	}
	p.tick(t)
	if st := p.rolloutOf(t, "K20261127_01"); st.State != "paused" || st.Wave != 0 {
		t.Errorf("paused past its soak: %s at wave %d", st.State, st.Wave)
	}
	if err := act(rollout.Pause); !errors.Is(err, store.ErrInvalidInput) || !errors.Is(err, rollout.ErrNotAllowed) {
		t.Errorf("pause a paused rollout: %v", err)
	}
	if err := act(rollout.Resume); err != nil {
		t.Fatal(err)
	}
	p.tick(t)
	if st := p.rolloutOf(t, "K20261127_01"); st.State != "running" || st.Wave != 0 || !strings.HasPrefix(st.Decision.Reason, "soaking until 2026-11-27T13:00:00Z") {
		t.Errorf("resumed: %s at wave %d, %q; want the soak from now", st.State, st.Wave, st.Decision.Reason)
	}
	if err := act(rollout.Promote); err != nil {
		t.Fatal(err)
	}
	var levels []int
	for _, h := range hosts {
		l, _ := h.run(t)
		levels = append(levels, l)
	}
	if !slices.Equal(levels, []int{2, 2}) {
		t.Errorf("levels after promote = %v, want both 2", levels)
	}
	if err := act(rollout.Rollback); err != nil {
		t.Fatal(err)
	}
	levels = nil
	for _, h := range hosts {
		l, err := h.run(t)
		if err != nil {
			t.Errorf("run after rollback: %v", err)
		}
		levels = append(levels, l)
	}
	if !slices.Equal(levels, []int{1, 1}) {
		t.Errorf("levels after rollback = %v, want both back at 1", levels)
	}
	entries, _ := p.st.AuditQuery(ctx, store.AuditFilter{Action: "rollout."})
	var got []string
	for _, e := range entries {
		got = append(got, e.Actor+" "+e.Action)
	}
	if want := []string{"cli rollout.rollback", "cli rollout.promote", "cli rollout.resume", "cli rollout.pause"}; !slices.Equal(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
}

// TestRolloutAnswersShared: servers in the same waves share one signed
// answer; a server in another wave gets another, and neither names a
// server.
func TestRolloutAnswersShared(t *testing.T) {
	p := newPortal(t, "sqlite")
	p.addKey(t, store.Key{Key: "fleet"})
	p.mustPublish(t, 1, p.now.Add(-72*time.Hour))
	pol := rollout.DefaultPolicy()
	pol.Waves, _ = rollout.ParseWaves("50,100")
	if err := p.srv.Core().SetRolloutPolicy(context.Background(), core.CLI, "main", pol); err != nil {
		t.Fatal(err)
	}
	var hosts []*host
	for range 8 {
		h := p.newHost(t)
		h.register(t, "fleet")
		if err := h.c.CheckIn(context.Background(), *h.report(t, nil)); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
	}
	p.mustPublish(t, 2, p.now.Add(-time.Hour))
	p.tick(t)
	bodies := map[string][]string{}
	for _, h := range hosts {
		body, _, err := h.c.Index(context.Background(), fakekernel.BuildID, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(body), h.c.ServerID) {
			t.Errorf("an answer names its server:\n%s", body)
		}
		bodies[string(body)] = append(bodies[string(body)], h.c.ServerID)
	}
	if len(bodies) != 2 {
		t.Fatalf("%d distinct answers to 8 servers in two waves, want 2", len(bodies))
	}
	for body, ids := range bodies {
		level := 1
		if strings.Contains(body, `"level": 2,`) {
			level = 2
		}
		if want := 4; len(ids) != want {
			t.Errorf("%d servers got the answer naming level %d, want %d", len(ids), level, want)
		}
	}
}
