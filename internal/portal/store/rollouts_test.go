package store

import (
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testRollouts: a patchset first enabled in a feed with waves begins a
// rollout there, in the same transaction (by publishing into an auto
// feed, or enabling it by hand); one enabled again does not; a feed
// without waves has none. A rollout changes only from the state and wave
// its caller saw, and each change bumps the version.
func testRollouts(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "SetFeedRollout main", s.SetFeedRollout(ctx, &FeedRollout{Feed: "main", Waves: "50,100", Policy: `{"soak":"1h0m0s"}`}))
	wantErr(t, "SetFeedRollout unknown feed", s.SetFeedRollout(ctx, &FeedRollout{Feed: "nosuch", Waves: "100", Policy: "{}"}), ErrNotFound)
	check(t, "AddFeed plain", s.AddFeed(ctx, &Feed{Name: "plain", Auto: true}))
	check(t, "AddFeed canary", s.AddFeed(ctx, &Feed{Name: "canary"}))
	check(t, "SetFeedRollout canary", s.SetFeedRollout(ctx, &FeedRollout{Feed: "canary", Waves: "1,100", Policy: "{}"}))
	addLevels(t, s, level(buildDebian, 1, "K20261120_01", "stable", t0), level(buildUbuntu, 4, "K20261120_01", "stable", t0),
		level(buildDebian, 2, "K20261127_01", "stable", t0))

	got, err := s.Rollouts(ctx, "", false)
	check(t, "Rollouts", err)
	want := []Rollout{
		{ID: got[0].ID, Feed: "main", Patchset: "K20261120_01", Waves: "50,100", State: "running"},
		{ID: got[1].ID, Feed: "main", Patchset: "K20261127_01", Waves: "50,100", State: "running"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("rollouts after publishing into main (with waves) and plain (without) (-want +got):\n%s", diff)
	}
	if fr, err := s.FeedRollout(ctx, "plain"); err == nil {
		t.Errorf("FeedRollout(plain) = %+v, want ErrNotFound", fr)
	}

	// Enabled by hand in canary: a rollout there; enabling it again, or
	// after disabling it, makes no other.
	check(t, "SetPatchsets canary", s.SetPatchsets(ctx, "canary", []string{"K20261127_01"}, true))
	check(t, "SetPatchsets canary off", s.SetPatchsets(ctx, "canary", []string{"K20261127_01"}, false))
	check(t, "SetPatchsets canary again", s.SetPatchsets(ctx, "canary", []string{"K20261127_01"}, true))
	canary, err := s.Rollouts(ctx, "canary", true)
	check(t, "Rollouts canary", err)
	if len(canary) != 1 || canary[0].Waves != "1,100" || canary[0].Patchset != "K20261127_01" {
		t.Fatalf("canary's rollouts = %+v, want one of K20261127_01 in waves 1,100", canary)
	}
	// A patchset deployed in a feed before it had waves starts none when
	// enabled again.
	check(t, "SetPatchsets plain off", s.SetPatchsets(ctx, "plain", []string{"K20261120_01"}, false))
	check(t, "SetFeedRollout plain", s.SetFeedRollout(ctx, &FeedRollout{Feed: "plain", Waves: "10,100", Policy: "{}"}))
	check(t, "SetPatchsets plain on", s.SetPatchsets(ctx, "plain", []string{"K20261120_01"}, true))
	if rs, _ := s.Rollouts(ctx, "plain", false); len(rs) != 0 {
		t.Errorf("plain's rollouts = %+v, want none", rs)
	}

	n, err := s.StampRollouts(ctx, t0)
	if err != nil || n != 3 {
		t.Fatalf("StampRollouts = %d, %v; want 3", n, err)
	}
	if n, _ := s.StampRollouts(ctx, t0.Add(time.Hour)); n != 0 {
		t.Errorf("StampRollouts again stamped %d", n)
	}
	r, err := s.Rollout(ctx, canary[0].ID)
	check(t, "Rollout", err)
	if !r.Started.Equal(t0) || !r.WaveStarted.Equal(t0) || !r.Updated.Equal(t0) {
		t.Errorf("stamped times %v %v %v, want %v", r.Started, r.WaveStarted, r.Updated, t0)
	}

	v0, _ := s.Version(ctx)
	next := *r
	next.Wave, next.Reason, next.WaveStarted, next.Updated = 1, "wave 1 (1%) healthy", t0.Add(2*time.Hour), t0.Add(2*time.Hour)
	check(t, "UpdateRollout", s.UpdateRollout(ctx, &next, "running", 0))
	if v1, _ := s.Version(ctx); v1 <= v0 {
		t.Errorf("version %d after a rollout changed, was %d", v1, v0)
	}
	stale := *r
	stale.State = "halted"
	wantErr(t, "UpdateRollout from a stale wave", s.UpdateRollout(ctx, &stale, "running", 0), ErrChanged)
	r, _ = s.Rollout(ctx, r.ID)
	if r.Wave != 1 || r.State != "running" || r.Reason != "wave 1 (1%) healthy" || !r.WaveStarted.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("rollout after one change and a stale one = %+v", r)
	}
	done := *r
	done.State = "done"
	check(t, "UpdateRollout done", s.UpdateRollout(ctx, &done, "running", 1))
	if rs, _ := s.Rollouts(ctx, "canary", true); len(rs) != 0 {
		t.Errorf("active rollouts of canary after done = %+v", rs)
	}

	targets, err := s.PatchsetTargets(ctx, "K20261120_01")
	check(t, "PatchsetTargets", err)
	if want := map[string]int{buildDebian: 1, buildUbuntu: 4}; !maps.Equal(targets, want) {
		t.Errorf("targets = %v, want %v", targets, want)
	}

	check(t, "AddRolloutSample", s.AddRolloutSample(ctx, r.ID, RolloutSample{At: t0.Add(time.Minute), Sample: `{"n":2}`}))
	check(t, "AddRolloutSample", s.AddRolloutSample(ctx, r.ID, RolloutSample{At: t0, Sample: `{"n":1}`}))
	samples, err := s.RolloutSamples(ctx, r.ID)
	check(t, "RolloutSamples", err)
	if diff := cmp.Diff([]RolloutSample{{t0, `{"n":1}`}, {t0.Add(time.Minute), `{"n":2}`}}, samples); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
}

// testRolloutMembers: a rollout's population is the feed's servers
// running one of the kernels, by key or by IP license, with the health
// they reported, if any.
func testRolloutMembers(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddFeed", s.AddFeed(ctx, &Feed{Name: "lab"}))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-main"}))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-lab", Feed: "lab"}))
	at := t0.Add(time.Hour)
	for _, v := range []struct{ key, id, build string }{
		{"kc-main", "srv-a", buildDebian}, {"kc-main", "srv-b", buildUbuntu}, {"kc-main", "srv-c", buildDebian}, {"kc-lab", "srv-d", buildDebian},
	} {
		check(t, "Register", s.Register(ctx, v.key, &Server{ID: v.id, Registered: t0}))
		check(t, "CheckIn", s.CheckIn(ctx, v.id, Report{BuildID: v.build, Level: 2, LastResult: "ok", At: at}))
	}
	check(t, "UpsertIPServer", s.UpsertIPServer(ctx, &Server{ID: "ip-192-0-2-9", IP: "192.0.2.9", BuildID: buildDebian, Level: 1, LastCheckin: at}, "main"))
	h := &Health{BootID: bootA, Booted: t0, Warnings: 1, Oopses: 0, CountsFrom: "sysfs", Level: 2,
		Apply: &Apply{Level: 2, OK: true, At: t0.Add(time.Minute), BootID: bootA}}
	check(t, "CheckIn with health", s.CheckIn(ctx, "srv-c", Report{BuildID: buildDebian, Level: 2, LastResult: "ok", At: at, Health: h}))

	got, err := s.RolloutMembers(ctx, "main", []string{buildDebian})
	check(t, "RolloutMembers", err)
	hw := *h
	hw.Updated = at
	want := []RolloutMember{
		{ID: "ip-192-0-2-9", BuildID: buildDebian, Level: 1, LastCheckin: at},
		{ID: "srv-a", BuildID: buildDebian, Level: 2, LastCheckin: at},
		{ID: "srv-c", BuildID: buildDebian, Level: 2, LastCheckin: at, Health: &hw},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("members of main on Debian's kernel (-want +got):\n%s", diff)
	}
	if got, _ := s.RolloutMembers(ctx, "main", []string{buildDebian, buildUbuntu}); len(got) != 4 {
		t.Errorf("members of main on both kernels: %d, want 4", len(got))
	}
	if got, _ := s.RolloutMembers(ctx, "lab", []string{buildDebian}); len(got) != 1 || got[0].ID != "srv-d" {
		t.Errorf("members of lab = %+v, want srv-d", got)
	}
}

func testWindowsUrgentCoverage(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-2"}))
	check(t, "SetKeyWindow", s.SetKeyWindow(ctx, "kc-1", "Sat 02:00-05:00 Europe/Berlin"))
	check(t, "SetKeyWindow", s.SetKeyWindow(ctx, "kc-2", "* 01:00-02:00"))
	check(t, "SetKeyWindow again", s.SetKeyWindow(ctx, "kc-2", "Sun 01:00-02:00"))
	wantErr(t, "SetKeyWindow unknown key", s.SetKeyWindow(ctx, "nosuch", "Sun 01:00-02:00"), ErrNotFound)
	w, err := s.KeyWindows(ctx)
	check(t, "KeyWindows", err)
	if want := map[string]string{"kc-1": "Sat 02:00-05:00 Europe/Berlin", "kc-2": "Sun 01:00-02:00"}; !maps.Equal(w, want) {
		t.Errorf("KeyWindows = %v, want %v", w, want)
	}
	check(t, "SetKeyWindow none", s.SetKeyWindow(ctx, "kc-2", ""))
	check(t, "DeleteKey", s.DeleteKey(ctx, "kc-1"))
	if w, _ := s.KeyWindows(ctx); len(w) != 0 {
		t.Errorf("KeyWindows after removing one and deleting the other's key = %v", w)
	}

	addLevels(t, s, level(buildDebian, 1, "K20261120_01", "stable", t0))
	v0, _ := s.Version(ctx)
	check(t, "SetPatchsetUrgent", s.SetPatchsetUrgent(ctx, "K20261120_01", true))
	wantErr(t, "SetPatchsetUrgent unknown", s.SetPatchsetUrgent(ctx, "K19990101_01", true), ErrNotFound)
	if ps, _ := s.Patchsets(ctx); len(ps) != 1 || !ps[0].Urgent {
		t.Errorf("patchsets after marking urgent = %+v", ps)
	}
	if fps, _ := s.FeedPatchsets(ctx, "main"); len(fps) != 1 || !fps[0].Urgent {
		t.Errorf("main's patchsets after marking urgent = %+v", fps)
	}
	if v1, _ := s.Version(ctx); v1 <= v0 {
		t.Errorf("version %d after marking urgent, was %d", v1, v0)
	}

	check(t, "RecordCoverage", s.RecordCoverage(ctx, CoverageDay{Day: "2026-11-26", Total: 10, UpToDate: 4, OutOfDate: 6}))
	check(t, "RecordCoverage", s.RecordCoverage(ctx, CoverageDay{Day: "2026-11-27", Total: 10, UpToDate: 7, OutOfDate: 3}))
	check(t, "RecordCoverage again", s.RecordCoverage(ctx, CoverageDay{Day: "2026-11-27", Total: 11, UpToDate: 9, OutOfDate: 1, Inactive: 1}))
	check(t, "RecordCoverage", s.RecordCoverage(ctx, CoverageDay{Day: "2026-10-01", Total: 1}))
	days, err := s.Coverage(ctx, "2026-10-29", "2026-11-27")
	check(t, "Coverage", err)
	want := []CoverageDay{{Day: "2026-11-26", Total: 10, UpToDate: 4, OutOfDate: 6}, {Day: "2026-11-27", Total: 11, UpToDate: 9, OutOfDate: 1, Inactive: 1}}
	if diff := cmp.Diff(want, days); diff != "" {
		t.Errorf("coverage (-want +got):\n%s", diff)
	}
}
