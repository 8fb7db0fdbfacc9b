package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kcare/kcare/internal/taint"
)

const (
	bootA = "6a1c8f0e-2b7d-4a3e-9c51-0f4e8d2b7a19"
	bootB = "0d3b5f7e-9a1c-4e2b-8d6f-3a5c7e9b1d2f"
)

// testServerHealth: the health check-ins report is kept with the last
// apply; a check-in from another boot notes the reboot and the level
// before it; one that changes nothing writes nothing; deleting the
// server deletes its health.
func testServerHealth(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	check(t, "Register", s.Register(ctx, "kc-1", &Server{ID: "srv-1", Registered: t0}))
	wantErr(t, "ServerHealth before any", func() error { _, err := s.ServerHealth(ctx, "srv-1"); return err }(), ErrNotFound)

	apply := &Apply{Level: 3, OK: true, At: t0.Add(time.Hour), BootID: bootA, Taint: taint.Livepatch, Warnings: 0, Oopses: 0}
	h := &Health{BootID: bootA, Booted: t0.Add(-time.Hour), Taint: taint.Livepatch | taint.Warn, Warnings: 1, Oopses: 0,
		CountsFrom: "sysfs", Level: 3, Apply: apply}
	report := func(at time.Time, h *Health) {
		t.Helper()
		check(t, "CheckIn", s.CheckIn(ctx, "srv-1", Report{Release: relDebian, BuildID: buildDebian, Level: h.Level,
			LastResult: "ok", At: at, Health: h}))
	}
	report(t0.Add(time.Hour), h)
	got, err := s.ServerHealth(ctx, "srv-1")
	check(t, "ServerHealth", err)
	want := *h
	want.Updated = t0.Add(time.Hour)
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("ServerHealth after the first check-in (-want +got):\n%s", diff)
	}

	// The same again, later: nothing changes, not even Updated.
	same := *h
	same.Booted = t0.Add(-time.Hour + 2*time.Second) // the uptime's rounding
	report(t0.Add(2*time.Hour), &same)
	if got, _ := s.ServerHealth(ctx, "srv-1"); !got.Updated.Equal(t0.Add(time.Hour)) || !got.Booted.Equal(h.Booted) {
		t.Errorf("after a check-in that changed nothing: updated %v, booted %v; want %v, %v", got.Updated, got.Booted, t0.Add(time.Hour), h.Booted)
	}

	// A reboot: another boot id, the kernel clean again, no apply yet.
	rebooted := &Health{BootID: bootB, Booted: t0.Add(3 * time.Hour), Warnings: 0, Oopses: 0, CountsFrom: "sysfs", Level: 0, Apply: apply}
	report(t0.Add(3*time.Hour+time.Minute), rebooted)
	got, err = s.ServerHealth(ctx, "srv-1")
	check(t, "ServerHealth", err)
	want = *rebooted
	want.Rebooted, want.RebootedLevel, want.Updated = t0.Add(3*time.Hour+time.Minute), 3, t0.Add(3*time.Hour+time.Minute)
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("ServerHealth after a reboot (-want +got):\n%s", diff)
	}

	// A failed apply in the new boot, and no apply record at all.
	failed := *rebooted
	failed.Apply = &Apply{Level: 4, At: t0.Add(4 * time.Hour), BootID: bootB}
	report(t0.Add(4*time.Hour), &failed)
	if got, _ := s.ServerHealth(ctx, "srv-1"); got.Apply == nil || got.Apply.OK || got.Apply.Level != 4 || !got.Rebooted.Equal(want.Rebooted) {
		t.Errorf("after a failed apply: %+v (apply %+v)", got, got.Apply)
	}
	none := *rebooted
	none.Apply = nil
	report(t0.Add(5*time.Hour), &none)
	if got, _ := s.ServerHealth(ctx, "srv-1"); got.Apply != nil {
		t.Errorf("after a check-in with no apply: apply %+v, want none", got.Apply)
	}

	// An IP-licensed server's health, and one for no server.
	check(t, "UpsertIPServer", s.UpsertIPServer(ctx, &Server{ID: "ip-192-0-2-9", IP: "192.0.2.9"}, "main"))
	check(t, "RecordHealth", s.RecordHealth(ctx, "ip-192-0-2-9", h, t0))
	if got, err := s.ServerHealth(ctx, "ip-192-0-2-9"); err != nil || got.BootID != bootA {
		t.Errorf("IP server's health = %+v, %v", got, err)
	}
	wantErr(t, "RecordHealth unknown", s.RecordHealth(ctx, "nosuchserver", h, t0), ErrNotFound)

	check(t, "DeleteServer", s.DeleteServer(ctx, "srv-1"))
	wantErr(t, "ServerHealth after delete", func() error { _, err := s.ServerHealth(ctx, "srv-1"); return err }(), ErrNotFound)
}
