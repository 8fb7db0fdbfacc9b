package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// TestRolloutCanaryBeforeFirstTick: a canary that takes the level between
// its publish and the rollout loop's next round is in the rollout: its
// check-in counts for its wave and its warning halts the rollout. (The
// rollout began only at the loop's round before, and what the canary did
// before then went unseen.)
func TestRolloutCanaryBeforeFirstTick(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p, hosts := rolloutPortal(t, kind)
		p.mustPublish(t, 2, p.now.Add(-time.Hour))
		hs := canaryFirst(t, p.rolloutOf(t, "K20261127_01"), hosts)
		canary := hs[0]
		canary.k.WarnOnLoad("kcare_test_l2")
		if level, err := canary.run(t); level != 2 || err != nil {
			t.Fatalf("the canary before the loop's round: level %d, %v; want level 2", level, err)
		}
		p.now = p.now.Add(time.Minute)
		p.tick(t)
		st := p.rolloutOf(t, "K20261127_01")
		if w := st.Decision.Waves[0]; st.State != "rolled-back" || w.Applied != 1 || w.Warnings != 1 {
			t.Errorf("after the canary's warning: %s (%q), wave 1's signals %+v; want rolled-back, 1 applied, 1 warning", st.State, st.Reason, w)
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

// call makes a request with an API token and returns the status and body.
func (p *portal) call(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, p.http.URL+path, strings.NewReader(body))
	req.Header.Set("X-Api-Key", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRolloutFaces: a halted rollout as the REST API, the Nagios check
// and the metrics tell it; the operator's actions through the REST API,
// refused to a read-only token; a feed's policy and a key's window set
// through it.
func TestRolloutFaces(t *testing.T) {
	p, hosts := rolloutPortal(t, "sqlite")
	p.mustPublish(t, 2, p.now.Add(-time.Hour))
	p.tick(t)
	canary := canaryFirst(t, p.rolloutOf(t, "K20261127_01"), hosts)[0]
	canary.k.WarnOnLoad("kcare_test_l2")
	canary.run(t)
	p.tick(t)
	id := p.rolloutOf(t, "K20261127_01").ID

	code, body := p.call(t, "GET", "/admin/api/rollouts", p.ro, "")
	want := fmt.Sprintf(`{"data":[{"id":%d,"feed":"main","patchset":"K20261127_01","waves":[50,100],"wave":1,"state":"rolled-back",`+
		`"reason":"1 new kernel warning (at most 0), 1 server with a new taint (at most 0)","urgent":false,`+
		`"started":"2026-11-27T10:00:00Z","wave_started":"2026-11-27T10:00:00Z","updated":"2026-11-27T10:00:00Z"}]}`+"\n", id)
	if code != 200 || body != want {
		t.Errorf("GET /admin/api/rollouts: %d\n%s\nwant\n%s", code, body, want)
	}
	code, body = p.call(t, "GET", fmt.Sprintf("/admin/api/rollouts/%d", id), p.ro, "")
	for _, part := range []string{`"verdict":"idle"`, `"health":[{"wave":1,"share":50,"size":1,"servers":1,"applied":1,"failures":0,"warnings":1,"oopses":0,"taints":1,"reboots":0,"silent":0},{"wave":2,"share":100,"size":2,"servers":1,"applied":0`,
		fmt.Sprintf(`{"server_id":"%s","wave":1,"level":2,"target":2,"health":"1 new warning, 1 new taint"}`, canary.c.ServerID)} {
		if code != 200 || !strings.Contains(body, part) {
			t.Errorf("GET /admin/api/rollouts/%d: %d, lacks %s\n%s", id, code, part, body)
		}
	}
	code, body = p.call(t, "GET", "/admin/api/kcare/nagios-rollouts", p.ro, "")
	wantNagios := "CRITICAL: 1 rollout halted or rolled back|running=0;paused=0;halted=0;rolled_back=1;done=0\n" +
		"K20261127_01 in feed main is rolled-back at wave 1: 1 new kernel warning (at most 0), 1 server with a new taint (at most 0)\n"
	if code != 200 || body != wantNagios {
		t.Errorf("Nagios rollouts: %d\n%s\nwant\n%s", code, body, wantNagios)
	}
	_, metrics := getText(t, p.http.URL+"/metrics")
	for _, line := range []string{`kcare_rollouts{feed="main",state="rolled-back"} 1`, `kcare_rollouts{feed="main",state="running"} 0`,
		`kcare_rollout_wave{feed="main",patchset="K20261127_01",state="rolled-back"} 1`} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}

	path := fmt.Sprintf("/admin/api/rollouts/%d/resume", id)
	if code, body := p.call(t, "POST", path, p.ro, ""); code != 403 {
		t.Errorf("resume with a read-only token: %d %s, want 403", code, body)
	}
	if code, body := p.call(t, "POST", fmt.Sprintf("/admin/api/rollouts/%d/frob", id), p.admin, ""); code != 400 || !strings.Contains(body, `action \"frob\"`) {
		t.Errorf("an unknown action: %d %s, want 400", code, body)
	}
	if code, body := p.call(t, "POST", "/admin/api/rollouts/999/pause", p.admin, ""); code != 404 {
		t.Errorf("pause an unknown rollout: %d %s, want 404", code, body)
	}
	if code, body := p.call(t, "POST", path, p.admin, ""); code != 200 || !strings.Contains(body, `"state":"running"`) || !strings.Contains(body, `"reason":"resume by alice"`) {
		t.Errorf("resume: %d %s", code, body)
	}
	if code, body := p.call(t, "POST", fmt.Sprintf("/admin/api/rollouts/%d/resume", id), p.admin, ""); code != 400 || !strings.Contains(body, "not allowed in this state") {
		t.Errorf("resume a running rollout: %d %s, want 400", code, body)
	}

	code, body = p.call(t, "PUT", "/admin/api/feeds/main/rollout", p.admin, `{"soak":"30m","max_warnings":3,"window":"Sat 02:00-05:00 Europe/Berlin"}`)
	wantPolicy := `{"waves":[50,100],"soak":"30m0s","auto_rollback":true,"max_failures":0,"max_warnings":3,"max_oopses":0,"max_taints":0,"max_reboots":0,"max_silent":0,"silent_after":"12h0m0s","min_checked_in":90,"window":"Sat 02:00-05:00 Europe/Berlin","urgent_skips_window":false}` + "\n"
	if code != 200 || body != wantPolicy {
		t.Errorf("PUT the policy: %d\n%s\nwant\n%s", code, body, wantPolicy)
	}
	for _, bad := range []string{`{"waves":[100,50]}`, `{"soak":"soon"}`, `{"window":"Funday 01:00-02:00"}`, `{"min_checked_in":150}`, `{"frob":1}`} {
		if code, body := p.call(t, "PUT", "/admin/api/feeds/main/rollout", p.admin, bad); code != 400 {
			t.Errorf("PUT the policy %s: %d %s, want 400", bad, code, body)
		}
	}
	if code, body := p.call(t, "PUT", "/admin/api/key-windows", p.ro, `{"key":"fleet","window":""}`); code != 403 {
		t.Errorf("key window with a read-only token: %d %s", code, body)
	}
	if code, body := p.call(t, "PUT", "/admin/api/key-windows", p.admin, `{"key":"fleet","window":"Sun 01:00-02:00"}`); code != 200 || body != `{"key":"fleet","window":"Sun 01:00-02:00"}`+"\n" {
		t.Errorf("key window: %d %s", code, body)
	}
	if code, body := p.call(t, "PUT", "/admin/api/patchsets/K20261127_01/urgent", p.admin, `{"urgent":true}`); code != 200 {
		t.Errorf("urgent: %d %s", code, body)
	}
	entries, _ := p.st.AuditQuery(context.Background(), store.AuditFilter{Actor: "alice"})
	var got []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Action, "level.") {
			got = append(got, e.Action+" "+e.Object)
		}
	}
	if want := []string{"patchset.urgent K20261127_01", "key.window f…", "feed.rollout main", fmt.Sprintf("rollout.resume rollout/%d", id)}; !slices.Equal(got, want) {
		t.Errorf("alice's audit entries = %q, want %q", got, want)
	}
}

// TestRolloutStatesOnTheWire: the wire's states are the rule's.
func TestRolloutStatesOnTheWire(t *testing.T) {
	var wire, rule []string
	for _, s := range apitype.RolloutStates {
		wire = append(wire, string(s))
	}
	for _, s := range rollout.States {
		rule = append(rule, string(s))
	}
	if !slices.Equal(wire, rule) {
		t.Errorf("apitype.RolloutStates %v, rollout.States %v", wire, rule)
	}
	var acts []string
	for _, a := range apitype.RolloutActions {
		acts = append(acts, string(a))
	}
	var ruleActs []string
	for _, a := range rollout.Actions {
		ruleActs = append(ruleActs, string(a))
	}
	slices.Sort(acts)
	slices.Sort(ruleActs)
	if !slices.Equal(acts, ruleActs) {
		t.Errorf("apitype.RolloutActions %v, rollout.Actions %v", acts, ruleActs)
	}
}
