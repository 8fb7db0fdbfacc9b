package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testCheckinHistory(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	check(t, "Register", s.Register(ctx, "kc-1", &Server{ID: "srv-1", Registered: t0}))
	for i := range CheckinHistoryKeep + 5 {
		c := Report{Level: i % 4, EffectiveRelease: relDebian, LastResult: "ok", At: t0.Add(time.Duration(i) * time.Minute)}
		check(t, "CheckIn", s.CheckIn(ctx, "srv-1", c))
	}
	got, err := s.CheckinHistory(ctx, "srv-1", 3)
	check(t, "CheckinHistory", err)
	last := t0.Add(time.Duration(CheckinHistoryKeep+4) * time.Minute)
	if len(got) != 3 || !got[0].At.Equal(last) || got[0].Level != (CheckinHistoryKeep+4)%4 || got[0].Result != "ok" {
		t.Errorf("CheckinHistory = %+v, want 3 newest first, first at %v", got, last)
	}
	n, err := s.PruneCheckins(ctx, t0.Add(-time.Hour))
	check(t, "PruneCheckins", err)
	if n != 5 {
		t.Errorf("PruneCheckins removed %d, want 5", n)
	}
	all, _ := s.CheckinHistory(ctx, "srv-1", 0)
	if len(all) != CheckinHistoryKeep {
		t.Errorf("%d check-ins kept, want %d", len(all), CheckinHistoryKeep)
	}
	check(t, "DeleteServer", s.DeleteServer(ctx, "srv-1"))
	if all, _ := s.CheckinHistory(ctx, "srv-1", 0); len(all) != 0 {
		t.Errorf("%d check-ins of a deleted server left", len(all))
	}
}

func testServersKeyset(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	for i := range 25 {
		// Hostnames out of registration order; two share a hostname.
		v := &Server{ID: fmt.Sprintf("srv-%02d", i), Hostname: fmt.Sprintf("web-%02d", (i*7)%23),
			IP: fmt.Sprintf("192.0.2.%d", 100-i), Registered: t0.Add(time.Duration(i%5) * time.Second)}
		check(t, "Register", s.Register(ctx, "kc-1", v))
	}
	for _, sort := range SortColumns {
		for _, desc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s-desc-%v", sort, desc), func(t *testing.T) {
				all, err := s.Servers(ctx, ServerFilter{Sort: sort, Desc: desc})
				check(t, "Servers", err)
				var paged []Server
				f := ServerFilter{Sort: sort, Desc: desc, Limit: 4}
				for range 20 {
					page, err := s.Servers(ctx, f)
					check(t, "Servers page", err)
					paged = append(paged, page...)
					if len(page) < f.Limit {
						break
					}
					c := CursorOf(page[len(page)-1], sort)
					f.After = &c
				}
				ids := func(l []Server) []string {
					var out []string
					for _, v := range l {
						out = append(out, v.ID)
					}
					return out
				}
				if diff := cmp.Diff(ids(all), ids(paged)); diff != "" {
					t.Errorf("pages differ from the whole list (-all +paged):\n%s", diff)
				}
				if len(all) != 25 {
					t.Errorf("%d servers, want 25", len(all))
				}
			})
		}
	}
	got, err := s.Servers(ctx, ServerFilter{Search: "192.0.2.99"})
	check(t, "Servers search IP", err)
	if len(got) != 1 || got[0].ID != "srv-01" {
		t.Errorf("search 192.0.2.99 = %v, want srv-01", got)
	}
	got, _ = s.Servers(ctx, ServerFilter{Search: "WEB-07"})
	if len(got) != 2 {
		t.Errorf("search WEB-07 found %d, want 2", len(got))
	}
}

func testServersState(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	addLevels(t, s, level(buildDebian, 1, "K1", "stable", t0.Add(-48*time.Hour)), level(buildDebian, 2, "K2", "stable", t0.Add(-24*time.Hour)))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	now := t0.Add(time.Hour)
	add := func(id, build string, lvl int, seen time.Time) {
		check(t, "Register", s.Register(ctx, "kc-1", &Server{ID: id, Registered: t0}))
		if !seen.IsZero() {
			check(t, "CheckIn", s.CheckIn(ctx, id, Report{BuildID: build, Level: lvl, At: seen}))
		}
	}
	add("up", buildDebian, 2, now.Add(-time.Hour))
	add("out", buildDebian, 1, now.Add(-time.Hour))
	add("unsup", buildUbuntu, 0, now.Add(-time.Hour))
	add("old", buildDebian, 1, now.Add(-72*time.Hour))
	add("never", "", 0, time.Time{})
	yes, no := true, false
	for _, c := range []struct {
		name string
		f    ServerFilter
		want []string
	}{
		{"inactive", ServerFilter{CheckinAge: 48 * time.Hour}, []string{"never", "old"}},
		{"unsupported", ServerFilter{ActiveWithin: 48 * time.Hour, Unsupported: &yes}, []string{"unsup"}},
		{"outofdate", ServerFilter{ActiveWithin: 48 * time.Hour, IsUpdated: &no}, []string{"out"}},
		{"uptodate", ServerFilter{ActiveWithin: 48 * time.Hour, IsUpdated: &yes, Unsupported: &no}, []string{"up"}},
	} {
		c.f.Now = now
		got, err := s.Servers(ctx, c.f)
		check(t, c.name, err)
		var ids []string
		for _, v := range got {
			ids = append(ids, v.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, c.want) {
			t.Errorf("%s: %v, want %v", c.name, ids, c.want)
		}
	}
	st, err := s.Stats(ctx, now, 48*time.Hour)
	check(t, "Stats", err)
	want := FleetStats{Total: 5, Active: 3, Inactive: 2, Unsupported: 1, OutOfDate: 1, UpToDate: 1}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	kernels, eff, err := s.TopKernels(ctx, 10)
	check(t, "TopKernels", err)
	if len(kernels) != 0 || len(eff) != 0 {
		// The check-ins above carried no release.
		t.Errorf("TopKernels = %v, %v; want none", kernels, eff)
	}
	check(t, "CheckIn", s.CheckIn(ctx, "up", Report{BuildID: buildDebian, Release: relDebian, EffectiveRelease: "6.1.0-57-amd64", Level: 2, At: now}))
	kernels, eff, _ = s.TopKernels(ctx, 10)
	if !slices.Equal(kernels, []Count{{relDebian, 1}}) || !slices.Equal(eff, []Count{{"6.1.0-57-amd64", 1}}) {
		t.Errorf("TopKernels = %v, %v", kernels, eff)
	}
	ks, err := s.Kernels(ctx)
	check(t, "Kernels", err)
	if len(ks) != 1 || ks[0].BuildID != buildDebian || ks[0].Levels != 2 || ks[0].Newest != 2 {
		t.Errorf("Kernels = %+v", ks)
	}
	fps, err := s.FeedPatchsets(ctx, "main")
	check(t, "FeedPatchsets", err)
	for _, p := range fps {
		if !p.Deployed {
			t.Errorf("patchset %s of an auto feed not deployed", p.Patchset)
		}
	}
	check(t, "AddFeed", s.AddFeed(ctx, &Feed{Name: "manual"}))
	fps, _ = s.FeedPatchsets(ctx, "manual")
	for _, p := range fps {
		if p.Deployed || p.Enabled {
			t.Errorf("patchset %s of a new manual feed deployed", p.Patchset)
		}
	}
}

func testAuditQuery(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	entries := []AuditEntry{
		{At: t0, Actor: "alice", Action: "key.add", Object: "kc-1", IP: "192.0.2.7", After: `{"limit":2}`},
		{At: t0.Add(time.Hour), Actor: "cli", Action: "key.edit", Object: "kc-1", IP: "cli", Before: `{"limit":2}`, After: `{"limit":3}`},
		{At: t0.Add(2 * time.Hour), Actor: "alice", Action: "feed.add", Object: "canary", IP: "192.0.2.7"},
	}
	for _, e := range entries {
		check(t, "Audit", s.Audit(ctx, e))
	}
	q := func(f AuditFilter) []string {
		got, err := s.AuditQuery(ctx, f)
		check(t, "AuditQuery", err)
		var out []string
		for _, e := range got {
			out = append(out, e.Action)
		}
		return out
	}
	for _, c := range []struct {
		name string
		f    AuditFilter
		want []string
	}{
		{"all", AuditFilter{}, []string{"feed.add", "key.edit", "key.add"}},
		{"actor", AuditFilter{Actor: "alice"}, []string{"feed.add", "key.add"}},
		{"object", AuditFilter{Object: "KC-"}, []string{"key.edit", "key.add"}},
		{"action", AuditFilter{Action: "key."}, []string{"key.edit", "key.add"}},
		{"dates", AuditFilter{From: t0.Add(time.Minute), To: t0.Add(90 * time.Minute)}, []string{"key.edit"}},
		{"limit", AuditFilter{Limit: 1}, []string{"feed.add"}},
	} {
		if got := q(c.f); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	got, _ := s.AuditQuery(ctx, AuditFilter{Action: "key.edit"})
	if len(got) != 1 || got[0].IP != "cli" || got[0].Before != `{"limit":2}` || got[0].After != `{"limit":3}` {
		t.Errorf("key.edit entry = %+v", got)
	}
	older, _ := s.AuditQuery(ctx, AuditFilter{BeforeID: got[0].ID})
	if len(older) != 1 || older[0].Action != "key.add" {
		t.Errorf("entries before %d = %+v", got[0].ID, older)
	}
}

func testSessions(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddUser", s.AddUser(ctx, &User{Name: "alice", PasswordHash: "x", Role: "admin"}))
	v := &Session{IDHash: []byte("hash-1"), User: "alice", Created: t0, CSRF: "tok", IP: "192.0.2.7"}
	check(t, "AddSession", s.AddSession(ctx, v))
	wantErr(t, "AddSession unknown user", s.AddSession(ctx, &Session{IDHash: []byte("h2"), User: "nobody", CSRF: "t"}), ErrNotFound)
	got, err := s.Session(ctx, []byte("hash-1"))
	check(t, "Session", err)
	want := Session{IDHash: []byte("hash-1"), User: "alice", Created: t0, LastSeen: t0, CSRF: "tok", IP: "192.0.2.7"}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("Session (-want +got):\n%s", diff)
	}
	check(t, "TouchSession", s.TouchSession(ctx, []byte("hash-1"), t0.Add(time.Minute)))
	got, _ = s.Session(ctx, []byte("hash-1"))
	if !got.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Errorf("LastSeen after touch = %v", got.LastSeen)
	}
	n, err := s.DeleteSessions(ctx, t0.Add(30*time.Second))
	check(t, "DeleteSessions", err)
	if n != 0 {
		t.Errorf("DeleteSessions removed a fresh session")
	}
	check(t, "DeleteUser", s.DeleteUser(ctx, "alice"))
	_, err = s.Session(ctx, []byte("hash-1"))
	wantErr(t, "Session of a deleted user", err, ErrNotFound)
	check(t, "DeleteSession", s.DeleteSession(ctx, []byte("hash-1")))
}

// testCheckinHistoryChanges: a check-in that reports what the server's
// row holds moves only its check-in time and adds no history line; one
// that reports a change adds one.
func testCheckinHistoryChanges(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	check(t, "Register", s.Register(ctx, "kc-1", &Server{ID: "srv-1", Registered: t0}))
	c := Report{Hostname: "web-01", IP: "192.0.2.1", Release: relDebian, BuildID: buildDebian, KernelID: kidDebian,
		Level: 1, EffectiveRelease: relDebian, LastResult: "ok", AgentVersion: "1.0.0"}
	for i, lv := range []int{1, 1, 1, 2, 2, 1} {
		c.Level, c.At = lv, t0.Add(time.Duration(i)*time.Minute)
		check(t, "CheckIn", s.CheckIn(ctx, "srv-1", c))
	}
	got, err := s.Server(ctx, "srv-1")
	check(t, "Server", err)
	if last := t0.Add(5 * time.Minute); !got.LastCheckin.Equal(last) || got.Level != 1 {
		t.Errorf("after six check-ins: level %d, last check-in %v; want 1, %v", got.Level, got.LastCheckin, last)
	}
	hist, err := s.CheckinHistory(ctx, "srv-1", 0)
	check(t, "CheckinHistory", err)
	var lines []string
	for _, h := range hist {
		lines = append(lines, fmt.Sprintf("%s level %d", h.At.Sub(t0), h.Level))
	}
	if want := []string{"5m0s level 1", "3m0s level 2", "0s level 1"}; !slices.Equal(lines, want) {
		t.Errorf("history %q, want %q", lines, want)
	}
}

// testCheckInConcurrent: check-ins from many callers at once (written in
// shared transactions) are each stored, and each caller hears only of its
// own: an unknown server fails alone.
func testCheckInConcurrent(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	const n = 200
	for i := range n {
		check(t, "Register", s.Register(ctx, "kc-1", &Server{ID: fmt.Sprintf("srv-%03d", i), Registered: t0}))
	}
	errs := make(chan error, n+1)
	for i := range n + 1 {
		go func() {
			id := fmt.Sprintf("srv-%03d", i) // srv-200 is not registered
			errs <- s.CheckIn(ctx, id, Report{Hostname: "h" + id, Level: i % 3, LastResult: "ok", At: t0.Add(time.Hour)})
		}()
	}
	failed := 0
	for range n + 1 {
		if err := <-errs; err != nil {
			failed++
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "srv-200") {
				t.Errorf("CheckIn: %v", err)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d check-ins failed, want 1 (the unknown server's)", failed)
	}
	for i := range n {
		id := fmt.Sprintf("srv-%03d", i)
		v, err := s.Server(ctx, id)
		check(t, "Server", err)
		if v.Hostname != "h"+id || v.Level != i%3 || !v.LastCheckin.Equal(t0.Add(time.Hour)) {
			t.Errorf("%s: hostname %q, level %d, last check-in %v", id, v.Hostname, v.Level, v.LastCheckin)
		}
	}
}

// testAgentServer: what authenticating an agent reads, in one query: the
// server as Server returns it, its key's settings, the store's version.
func testAgentServer(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1", Note: "web", Limit: 5, Sticky: "2026-11-20", IPRanges: []string{"192.0.2.0/24"}}))
	check(t, "Register", s.Register(ctx, "kc-1", &Server{ID: "srv-1", Hostname: "web-01", IP: "192.0.2.1", Registered: t0}))
	check(t, "CheckIn", s.CheckIn(ctx, "srv-1", Report{Hostname: "web-01", IP: "192.0.2.1", BuildID: buildDebian, Level: 2, LastResult: "ok", At: t0.Add(time.Hour)}))
	check(t, "UpsertIPServer", s.UpsertIPServer(ctx, &Server{ID: "ip-192-0-2-9", IP: "192.0.2.9"}, "main"))
	v, k, version, err := s.AgentServer(ctx, "srv-1")
	check(t, "AgentServer", err)
	want, err := s.Server(ctx, "srv-1")
	check(t, "Server", err)
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("AgentServer's server (-Server +AgentServer):\n%s", diff)
	}
	wantKey := &Key{Key: "kc-1", Note: "web", Limit: 5, Feed: "main", Sticky: "2026-11-20", IPRanges: []string{"192.0.2.0/24"}}
	if k != nil {
		k.Created = time.Time{}
	}
	if diff := cmp.Diff(wantKey, k); diff != "" {
		t.Errorf("AgentServer's key (-want +got):\n%s", diff)
	}
	if sv, err := s.Version(ctx); err != nil || version != sv {
		t.Errorf("AgentServer's version %d, Version %d (%v)", version, sv, err)
	}
	if _, k, _, err := s.AgentServer(ctx, "ip-192-0-2-9"); err != nil || k != nil {
		t.Errorf("AgentServer of an IP-licensed server: key %+v, %v; want none", k, err)
	}
	_, _, _, err = s.AgentServer(ctx, "nosuchserver")
	wantErr(t, "AgentServer unknown", err, ErrNotFound)
}
