package resolve

import (
	"errors"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/store"
)

func TestPick(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	levels := []store.Level{
		{Level: 1, Released: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)},
		{Level: 2, Released: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)},
		{Level: 3, Released: now.Add(-time.Hour)},
	}
	delayed := &store.Feed{Name: "delayed", DeployAfter: 24 * time.Hour}
	tests := []struct {
		name  string
		feed  *store.Feed
		req   Request
		want  int // 0: none
		errIs error
	}{
		{"newest", nil, Request{}, 3, nil},
		{"prefix_test", nil, Request{Prefix: "test"}, 3, nil},
		{"prefix_12h", nil, Request{Prefix: "12h"}, 2, nil},
		{"prefix_48h", nil, Request{Prefix: "48h"}, 2, nil},
		{"feed_delay", delayed, Request{}, 2, nil},
		{"sticky_before_l2", nil, Request{Sticky: "191126"}, 1, nil},
		{"sticky_day_of_l2", nil, Request{Sticky: "20112026"}, 2, nil},
		{"sticky_iso", nil, Request{Sticky: "2026-11-27"}, 3, nil},
		{"sticky_before_all", nil, Request{Sticky: "2026-10-01"}, 0, nil},
		{"bad_prefix", nil, Request{Prefix: "6h"}, 0, ErrBadPrefix},
		{"bad_sticky", nil, Request{Sticky: "321326"}, 0, ErrBadSticky},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Now = now
			got, err := Pick(levels, tt.feed, tt.req)
			if tt.errIs != nil {
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("Pick error = %v, want %v", err, tt.errIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Pick: %v", err)
			}
			n := 0
			if got != nil {
				n = got.Level
			}
			if n != tt.want {
				t.Errorf("Pick = level %d, want %d", n, tt.want)
			}
		})
	}
}

func TestRollbackFrom(t *testing.T) {
	const build, other = "eb4fbcd037e7253717950bf2b93bd5566f47c56f", "4b1a05bb2ba8e1d9e8a6a3c4b1d1b71f2f38a0c6"
	l2 := &store.Level{Level: 2}
	tests := []struct {
		name   string
		srv    *store.Server
		picked *store.Level
		want   int
	}{
		{"reported_above_allowed", &store.Server{BuildID: build, Level: 3}, l2, 3},
		{"reported_allowed", &store.Server{BuildID: build, Level: 2}, l2, 0},
		{"reported_below_allowed", &store.Server{BuildID: build, Level: 1}, l2, 0},
		{"never_checked_in", &store.Server{}, l2, 0},
		{"reported_another_kernel", &store.Server{BuildID: other, Level: 3}, l2, 0},
		{"nothing_allowed", &store.Server{BuildID: build, Level: 3}, nil, 0},
		{"unknown_server", nil, l2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RollbackFrom(tt.srv, build, tt.picked); got != tt.want {
				t.Errorf("RollbackFrom = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestNextChange: the time a held-back level becomes allowed, and that at
// that instant Pick's answer changes while just before it does not.
func TestNextChange(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	levels := []store.Level{
		{Level: 1, Released: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)},
		{Level: 2, Released: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)},
		{Level: 3, Released: now.Add(-time.Hour)},
		{Level: 4, Released: now.Add(2 * time.Hour)}, // published ahead of its release
	}
	delayed := &store.Feed{Name: "delayed", DeployAfter: 24 * time.Hour}
	tests := []struct {
		name string
		feed *store.Feed
		req  Request
		want time.Time // zero: never
	}{
		{"release_ahead", nil, Request{}, now.Add(2 * time.Hour)},
		{"prefix_12h", nil, Request{Prefix: "12h"}, now.Add(11 * time.Hour)},
		{"feed_delay", delayed, Request{}, now.Add(23 * time.Hour)},
		{"feed_delay_and_prefix_48h", delayed, Request{Prefix: "48h"}, now.Add(71 * time.Hour)},
		{"sticky_holds_back_for_good", nil, Request{Sticky: "2026-11-20"}, time.Time{}},
		{"sticky_today", nil, Request{Sticky: "2026-11-27"}, now.Add(2 * time.Hour)},
		{"sticky_today_12h", nil, Request{Prefix: "12h", Sticky: "2026-11-27"}, now.Add(11 * time.Hour)},
		{"update_delay_24h", nil, Request{Delay: "24h"}, now.Add(23 * time.Hour)},
		{"sticky_patchset_before_all", nil, Request{Patchset: "K20261001_01", Order: map[string]int{"K20261001_01": 0}}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Now = now
			got, err := NextChange(levels, tt.feed, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.want) {
				t.Fatalf("NextChange = %v, want %v", got, tt.want)
			}
			if got.IsZero() {
				return
			}
			pick := func(at time.Time) int {
				r := tt.req
				r.Now = at
				l, err := Pick(levels, tt.feed, r)
				if err != nil || l == nil {
					t.Fatalf("Pick at %v = %v, %v", at, l, err)
				}
				return l.Level
			}
			if a, b := pick(now), pick(got.Add(-time.Second)); a != b {
				t.Errorf("Pick changed before NextChange: level %d now, %d a second before %v", a, b, got)
			}
			if a, b := pick(now), pick(got); a == b {
				t.Errorf("Pick at NextChange %v = level %d, the same as now", got, b)
			}
		})
	}
	if _, err := NextChange(levels, nil, Request{Prefix: "6h", Now: now}); !errors.Is(err, ErrBadPrefix) {
		t.Errorf("NextChange with a bad prefix = %v, want ErrBadPrefix", err)
	}
}
