package web_test

import (
	"context"
	"flag"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/rollout"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/web"
)

var updateGolden = flag.Bool("update", false, "write the golden files anew")

// golden compares got with testdata/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s (go test -update writes it): %v", path, err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// TestCoverageChart: the last 30 days, stacked by state, a day with no
// count an empty slot; SVG with no style attribute.
func TestCoverageChart(t *testing.T) {
	today := time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)
	days := []store.CoverageDay{
		{Day: "2026-10-29", Total: 10, UpToDate: 2, OutOfDate: 8},
		{Day: "2026-11-20", Total: 12, UpToDate: 6, OutOfDate: 4, Unsupported: 1, Inactive: 1},
		{Day: "2026-11-27", Total: 12, UpToDate: 11, Inactive: 1},
	}
	svg := string(web.CoverageChart(days, today, 30))
	if strings.Contains(svg, "style=") {
		t.Error("the chart has a style attribute, which the Content-Security-Policy blocks")
	}
	for _, want := range []string{
		`<title id="coverage-title">Patch coverage, last 30 days: today 11 of 12 servers up to date</title>`,
		`<title>2026-11-20: 6 of 12 servers up to date, 4 out of date, 1 unsupported, 1 inactive</title>`,
		`<title>2026-11-21: not counted</title>`,
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("the chart lacks %s", want)
		}
	}
	if n := strings.Count(svg, "not counted"); n != 27 {
		t.Errorf("%d days not counted, want 27", n)
	}
	golden(t, "coverage.svg", svg)
}

// TestRolloutChart: servers with the level against those in the waves,
// the second wave's start and the halt marked, the warnings per wave.
func TestRolloutChart(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	st := &core.RolloutStatus{Rollout: store.Rollout{ID: 7, Patchset: "K20261127_01", State: "rolled-back", Wave: 1, Started: t0}}
	samples := []core.Sample{
		{At: t0, State: "running", Wave: 0, Servers: 20, Admitted: 2, Applied: 0, Warnings: []int64{0, 0}},
		{At: t0.Add(20 * time.Minute), State: "running", Wave: 0, Servers: 20, Admitted: 2, Applied: 2, Warnings: []int64{0, 0}},
		{At: t0.Add(60 * time.Minute), State: "running", Wave: 1, Servers: 20, Admitted: 20, Applied: 2, Warnings: []int64{0, 0}},
		{At: t0.Add(90 * time.Minute), State: "running", Wave: 1, Servers: 20, Admitted: 20, Applied: 9, Warnings: []int64{0, 3}},
		{At: t0.Add(91 * time.Minute), State: "rolled-back", Wave: 1, Servers: 20, Admitted: 20, Applied: 9, Warnings: []int64{0, 3}},
	}
	svg := string(web.RolloutChart(st, samples, t0.Add(2*time.Hour)))
	for _, want := range []string{
		`<title id="rollout-7-title">Rollout of K20261127_01: 9 of 20 servers have the level; rolled-back at wave 2</title>`,
		`>wave 2</text>`, `>rolled-back</text>`, `<title>wave 2: 3 new kernel warnings</title>`, `>wave 1: 0</text>`,
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("the chart lacks %s", want)
		}
	}
	if strings.Contains(svg, "style=") {
		t.Error("the chart has a style attribute")
	}
	golden(t, "rollout.svg", svg)
	if got := web.RolloutChart(&core.RolloutStatus{}, nil, t0); got != "" {
		t.Errorf("a rollout not started yet has a chart: %s", got)
	}
}

// TestFeedPageRollouts: the feed page shows the feed's policy and each
// rollout with the health of its waves; an admin gets the actions its
// state allows, a read-only operator none; every page names a halted
// rollout in a banner; an action is audited.
func TestFeedPageRollouts(t *testing.T) {
	u := newTestUI(t, web.Config{})
	ctx := context.Background()
	c := u.ui.Core()
	pol := rollout.DefaultPolicy()
	pol.Waves, _ = rollout.ParseWaves("10,100")
	pol.Soak = rollout.Duration(2 * time.Hour)
	if err := c.SetRolloutPolicy(ctx, core.CLI, "main", pol); err != nil {
		t.Fatal(err)
	}
	err := u.st.AddLevel(ctx, &store.Level{BuildID: "eb4fbcd037e7253717950bf2b93bd5566f47c56f", KernelID: "9a5c3e1f0b7d2468ace13579bdf02468ace13579",
		Release: "6.1.0-56-amd64", Level: 1, Patchset: "K20261120_01", Digest: strings.Repeat("ab", 32), Size: 1, EffectiveRelease: "6.1.0-56-amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RolloutTick(ctx); err != nil {
		t.Fatal(err)
	}
	alice, csrf := u.session("alice", alicePassword)
	bob, _ := u.session("bob", bobPassword)
	get := func(path string, ck *http.Cookie) string {
		t.Helper()
		req, _ := http.NewRequest("GET", path, nil)
		req.AddCookie(ck)
		resp := u.do(req, "127.0.0.1")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return body(resp)
	}
	page := get("/admin/feeds/main", alice)
	for _, want := range []string{
		`New patchsets roll out in waves of 10%, 100%, each soaking 2h0m0s; a wave halts the rollout with more than 0 failed applies, 0 new warnings, 0 oopses, 0 new taints, 0 reboots or 0 silent servers, and rolls it back; the next wave waits for 90% of the servers to check in with the level.`,
		`<h3>K20261120_01 <span class="state state-running">running</span> <span class="muted">wave 1 of 2, since 2026-11-20 09:00</span></h3>`,
		`<p class="muted">Now: soaking until 2026-11-20T11:00:00Z</p>`,
		`<tr class="current"><td>1</td><td>10%</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td><td>ok</td></tr>`,
		`<button name="action" value="pause" class="secondary">pause</button><button name="action" value="promote">promote</button><button name="action" value="rollback" class="danger">rollback</button><button name="action" value="halt" class="danger">halt</button>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the feed page lacks %s", want)
		}
	}
	if strings.Contains(get("/admin/feeds/main", bob), `action="/admin/rollouts/`) {
		t.Error("a read-only operator gets the rollout's buttons")
	}

	act := func(ck *http.Cookie, token, action string) *http.Response {
		req, _ := http.NewRequest("POST", "/admin/rollouts/1", strings.NewReader(url.Values{"csrf": {token}, "action": {action}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(ck)
		return u.do(req, "127.0.0.1")
	}
	if resp := act(bob, csrf, "halt"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("halt as a read-only operator: %d, want 403", resp.StatusCode)
	}
	if resp := act(alice, "wrong", "halt"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("halt with a wrong CSRF token: %d, want 403", resp.StatusCode)
	}
	resp := act(alice, csrf, "rollback")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/feeds/main#rollout-1" {
		t.Fatalf("rollback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	banner := regexp.MustCompile(`<div class="banner" id="stopped"><p>(.*?)</p></div>`)
	for _, path := range []string{"/admin/", "/admin/servers", "/admin/feeds/main"} {
		m := banner.FindStringSubmatch(get(path, bob))
		if want := `The rollout of K20261120_01 in feed <a href="/admin/feeds/main#rollout-1">main</a> is rolled-back at wave 1: rollback by alice`; m == nil || m[1] != want {
			t.Errorf("GET %s: banner %q, want %q", path, m, want)
		}
	}
	page = get("/admin/feeds/main", alice)
	if !strings.Contains(page, `<button name="action" value="resume">resume</button></form>`) || strings.Contains(page, `value="rollback"`) {
		t.Error("a rolled back rollout's buttons are not resume alone")
	}
	entries, _ := u.st.AuditQuery(ctx, store.AuditFilter{Actor: "alice"})
	if len(entries) != 1 || entries[0].Action != "rollout.rollback" || entries[0].Object != "rollout/1" {
		t.Errorf("alice's audit entries: %+v", entries)
	}
}
