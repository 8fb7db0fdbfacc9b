package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/taint"
)

func TestParseWaves(t *testing.T) {
	tests := []struct {
		in   string
		want Waves
		str  string
	}{
		{"", nil, ""},
		{"100", Waves{10000}, "100"},
		{"1,10,50,100", Waves{100, 1000, 5000, 10000}, "1,10,50,100"},
		{" 0.5%, 5 ,100% ", Waves{50, 500, 10000}, "0.5,5,100"},
		{"12.25,100", Waves{1225, 10000}, "12.25,100"},
		{"50,100", Waves{5000, 10000}, "50,100"},
	}
	for _, tt := range tests {
		got, err := ParseWaves(tt.in)
		if err != nil || !slices.Equal(got, tt.want) || got.String() != tt.str {
			t.Errorf("ParseWaves(%q) = %v (%q), %v; want %v (%q)", tt.in, got, got.String(), err, tt.want, tt.str)
		}
	}
	for _, in := range []string{"10,50", "50,10,100", "10,10,100", "0,100", "101", "-5,100", "1.234,100", "ten,100", ",100", ".5,100", "+5,100"} {
		if got, err := ParseWaves(in); !errors.Is(err, ErrBadWaves) {
			t.Errorf("ParseWaves(%q) = %v, %v; want ErrBadWaves", in, got, err)
		}
	}
}

func TestSize(t *testing.T) {
	tests := []struct{ n, bp, want int }{
		{0, 100, 0}, {1, 100, 1}, {2, 5000, 1}, {2, 10000, 2}, {3, 5000, 2},
		{10000, 100, 100}, {10001, 100, 101}, {150, 100, 2}, {50, 100, 1}, {1_000_000, 50, 5000},
	}
	for _, tt := range tests {
		if got := Size(tt.n, tt.bp); got != tt.want {
			t.Errorf("Size(%d, %s%%) = %d, want %d", tt.n, Percent(tt.bp), got, tt.want)
		}
	}
}

// TestWaveMembership: a server's wave depends on its id alone among the
// same servers; every wave takes ceil(n·p) and at least one; a server
// that joins moves the others by at most one place.
func TestWaveMembership(t *testing.T) {
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("srv%05d", i)
	}
	ranks := Rank(ids)
	shuffled := slices.Clone(ids)
	slices.Reverse(shuffled)
	if again := Rank(shuffled); !mapsEqual(ranks, again) {
		t.Fatal("Rank depends on the order the ids come in")
	}
	w, _ := ParseWaves("1,10,50,100")
	per := make([]int, len(w))
	for _, id := range ids {
		per[w.WaveOf(ranks[id], len(ids))]++
	}
	if want := []int{10, 90, 400, 500}; !slices.Equal(per, want) {
		t.Errorf("servers per wave of 1000 = %v, want %v", per, want)
	}
	// One more server: no one moves more than one place.
	more := Rank(append(slices.Clone(ids), "srv-new"))
	for _, id := range ids {
		if d := more[id] - ranks[id]; d < 0 || d > 1 {
			t.Fatalf("%s moved from %d to %d when one server joined", id, ranks[id], more[id])
		}
	}
	// Two servers, waves 50/100: one canary, then the other.
	two := Rank([]string{"a1b2c3", "d4e5f6"})
	half, _ := ParseWaves("50,100")
	waves := []int{half.WaveOf(two["a1b2c3"], 2), half.WaveOf(two["d4e5f6"], 2)}
	slices.Sort(waves)
	if !slices.Equal(waves, []int{0, 1}) {
		t.Errorf("two servers' waves = %v, want one in each", waves)
	}
	// One server is the canary of every rollout; a server the ranking has
	// not seen yet waits for the last wave.
	if got := w.WaveOf(0, 1); got != 0 {
		t.Errorf("the only server is in wave %d, want 0", got)
	}
	if got := w.WaveOf(1000, 1000); got != 3 {
		t.Errorf("an unranked server is in wave %d, want the last", got)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestAdmits(t *testing.T) {
	tests := []struct {
		s             State
		current, wave int
		hasIt, want   bool
	}{
		{Running, 0, 0, false, true},
		{Running, 0, 1, false, false},
		{Running, 0, 1, true, true},
		{Paused, 1, 1, false, true},
		{Halted, 1, 0, false, false},
		{Halted, 1, 0, true, true},
		{RolledBack, 3, 0, true, false},
		{Done, 0, 3, false, true},
	}
	for _, tt := range tests {
		if got := tt.s.Admits(tt.current, tt.wave, tt.hasIt); got != tt.want {
			t.Errorf("%s at wave %d admits wave %d (has it: %v) = %v, want %v", tt.s, tt.current, tt.wave, tt.hasIt, got, tt.want)
		}
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		a     Action
		s     State
		wave  int
		want  State
		wwant int
		ok    bool
	}{
		{Pause, Running, 1, Paused, 1, true},
		{Pause, Halted, 1, Halted, 1, false},
		{Resume, Paused, 1, Running, 1, true},
		{Resume, Halted, 1, Running, 1, true},
		{Resume, RolledBack, 0, Running, 0, true},
		{Resume, Running, 1, Running, 1, false},
		{Promote, Running, 1, Running, 2, true},
		{Promote, Halted, 0, Halted, 1, true},
		{Promote, Running, 3, Done, 3, true},
		{Promote, RolledBack, 0, RolledBack, 0, false},
		{Rollback, Done, 3, RolledBack, 3, true},
		{Rollback, RolledBack, 3, RolledBack, 3, false},
		{Halt, Paused, 2, Halted, 2, true},
		{Halt, Done, 3, Done, 3, false},
	}
	for _, tt := range tests {
		s, w, err := tt.a.Apply(tt.s, tt.wave, 4)
		if (err == nil) != tt.ok || s != tt.want || w != tt.wwant {
			t.Errorf("%s on %s at wave %d = %s %d, %v; want %s %d (allowed: %v)", tt.a, tt.s, tt.wave, s, w, err, tt.want, tt.wwant, tt.ok)
		}
		if !tt.ok && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s on %s: %v, want ErrNotAllowed", tt.a, tt.s, err)
		}
	}
}

func TestPolicyJSON(t *testing.T) {
	p := DefaultPolicy()
	p.Waves, _ = ParseWaves("0.5,10,100")
	p.MaxWarnings = 2
	b, err := json.Marshal(p)
	want := `{"waves":[0.5,10,100],"soak":"4h0m0s","auto_rollback":true,"max_failures":0,"max_warnings":2,"max_oopses":0,"max_taints":0,"max_reboots":0,"max_silent":0,"silent_after":"12h0m0s","min_checked_in":90}`
	if err != nil || string(b) != want {
		t.Fatalf("marshal = %s, %v\nwant %s", b, err, want)
	}
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil || back.Waves.String() != "0.5,10,100" || back.Soak != p.Soak || back.MaxWarnings != 2 {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"waves":[10,5,100]}`), &back); !errors.Is(err, ErrBadWaves) {
		t.Errorf("decreasing waves: %v, want ErrBadWaves", err)
	}
	for name, edit := range map[string]func(*Policy){
		"negative_soak":   func(p *Policy) { p.Soak = -1 },
		"silent_too_soon": func(p *Policy) { p.SilentAfter = Duration(time.Second) },
		"checked_in_101":  func(p *Policy) { p.MinCheckedIn = 101 },
		"negative_max":    func(p *Policy) { p.MaxOopses = -1 },
	} {
		q := DefaultPolicy()
		edit(&q)
		if err := q.Check(); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("%s: Check = %v, want ErrBadPolicy", name, err)
		}
	}
	if err := DefaultPolicy().Check(); err != nil {
		t.Errorf("DefaultPolicy().Check() = %v", err)
	}
}

// t0 is when the rollouts of TestEvaluate began.
var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

const bootA, bootB = "6a1c8f0e-2b7d-4a3e-9c51-0f4e8d2b7a19", "0d3b5f7e-9a1c-4e2b-8d6f-3a5c7e9b1d2f"

// healthy is a member of wave w that applied level 3 cleanly at t0+1h
// and checked in since.
func healthy(id string, w int) Member {
	return Member{ID: id, Wave: w, Target: 3, Level: 3, LastCheckin: t0.Add(2 * time.Hour),
		Health: &Health{BootID: bootA, Taint: taint.Expected, Warnings: 2,
			Apply: &Apply{Level: 3, OK: true, At: t0.Add(time.Hour), BootID: bootA, Warnings: 2}}}
}

// TestEvaluate: the health gate halts on each signal over its threshold,
// counting only since the rollout began and within a boot; a healthy
// rollout waits for its soak (not when urgent) and its check-ins, then
// advances, and finishes after the last wave.
func TestEvaluate(t *testing.T) {
	waves, _ := ParseWaves("50,100")
	run := Rollout{State: Running, Waves: waves, Wave: 0, Started: t0, WaveStarted: t0}
	p := DefaultPolicy()
	p.Waves = waves
	after := t0.Add(5 * time.Hour) // past the 4h soak
	edit := func(m Member, f func(*Member)) Member { f(&m); return m }
	tests := []struct {
		name    string
		r       Rollout
		p       Policy
		members []Member
		now     time.Time
		verdict Verdict
		reason  string
	}{
		{"healthy_soaked_advances", run, p, []Member{healthy("a", 0), healthy("b", 1)}, after, Advance,
			"wave 1 (50%) healthy: 1 of 1 servers have the level"},
		{"soaking", run, p, []Member{healthy("a", 0)}, t0.Add(3 * time.Hour), Wait, "soaking until 2026-11-27T14:00:00Z"},
		{"urgent_skips_soak", func() Rollout { r := run; r.Urgent = true; return r }(), p, []Member{healthy("a", 0)}, t0.Add(3 * time.Hour), Advance,
			"wave 1 (50%) healthy: 1 of 1 servers have the level"},
		{"waits_for_check_ins", run, p, []Member{healthy("a", 0), edit(healthy("c", 0), func(m *Member) { m.Level, m.Health.Apply = 2, nil })}, after, Wait,
			"1 of 2 servers have checked in with the level; 90% (2) are needed"},
		{"old_check_in_does_not_count", run, p, []Member{edit(healthy("a", 0), func(m *Member) { m.LastCheckin = t0.Add(-time.Minute) })}, t0.Add(5 * time.Hour), Wait,
			"0 of 1 servers have checked in with the level; 90% (1) are needed"},
		{"new_warning_halts", run, p, []Member{edit(healthy("a", 0), func(m *Member) { m.Health.Warnings = 3; m.Health.Taint |= taint.Warn })}, t0.Add(time.Hour), Unwell,
			"1 new kernel warning (at most 0), 1 server with a new taint (at most 0)"},
		{"warning_within_threshold", run, func() Policy { q := p; q.MaxWarnings, q.MaxTaints = 1, 1; return q }(),
			[]Member{edit(healthy("a", 0), func(m *Member) { m.Health.Warnings = 3; m.Health.Taint |= taint.Warn })}, after, Advance,
			"wave 1 (50%) healthy: 1 of 1 servers have the level"},
		{"warning_in_later_wave_not_yet_counted", run, p, []Member{healthy("a", 0), edit(healthy("b", 1), func(m *Member) { m.Health.Warnings = 9 })}, after, Advance,
			"wave 1 (50%) healthy: 1 of 1 servers have the level"},
		{"warning_before_the_rollout_ignored", run, p, []Member{edit(healthy("a", 0), func(m *Member) {
			m.Health.Apply.At = t0.Add(-time.Hour)
		})}, after, Advance, "wave 1 (50%) healthy: 1 of 1 servers have the level"},
		// The agent's clock may be behind the portal's: an apply it
		// dates a little before the rollout began is the rollout's.
		{"apply_dated_within_the_clock_skew_counts", run, p, []Member{edit(healthy("a", 0), func(m *Member) {
			m.Health.Apply.At = t0.Add(-4 * time.Minute)
			m.Health.Warnings = 3
		})}, after, Unwell, "1 new kernel warning (at most 0)"},
		{"oopses_halt", run, p, []Member{healthy("a", 0), edit(healthy("b", 0), func(m *Member) { m.Health.Oopses = 2; m.Health.Taint |= taint.Die })}, after, Unwell,
			"2 new kernel oopses (at most 0), 1 server with a new taint (at most 0)"},
		{"failed_apply_halts", run, p, []Member{edit(healthy("a", 0), func(m *Member) { m.Level, m.Health.Apply.OK = 2, false })}, after, Unwell,
			"1 failed apply (at most 0)"},
		{"reboot_with_the_level_halts", run, p, []Member{edit(healthy("a", 0), func(m *Member) {
			m.Health.BootID, m.Health.Rebooted, m.Health.RebootedLevel = bootB, t0.Add(90*time.Minute), 3
		})}, after, Unwell, "1 server rebooted with the level (at most 0)"},
		{"reboot_before_the_level_ignored", run, p, []Member{edit(healthy("a", 0), func(m *Member) {
			m.Health.Rebooted, m.Health.RebootedLevel = t0.Add(30*time.Minute), 2
		})}, after, Advance, "wave 1 (50%) healthy: 1 of 1 servers have the level"},
		{"warnings_of_another_boot_ignored", run, p, []Member{edit(healthy("a", 0), func(m *Member) {
			m.Health.BootID, m.Health.Warnings = bootB, 0
		})}, after, Advance, "wave 1 (50%) healthy: 1 of 1 servers have the level"},
		{"silent_server_halts", run, p, []Member{healthy("a", 0)}, t0.Add(15 * time.Hour), Unwell, "1 server stopped checking in (at most 0)"},
		{"paused_still_halts", func() Rollout { r := run; r.State = Paused; return r }(), p,
			[]Member{edit(healthy("a", 0), func(m *Member) { m.Health.Warnings = 4 })}, after, Unwell, "2 new kernel warnings (at most 0)"},
		{"paused_waits", func() Rollout { r := run; r.State = Paused; return r }(), p, []Member{healthy("a", 0)}, after, Wait, "paused"},
		{"last_wave_finishes", func() Rollout { r := run; r.Wave, r.WaveStarted = 1, t0.Add(time.Hour); return r }(), p,
			[]Member{healthy("a", 0), healthy("b", 1)}, t0.Add(6 * time.Hour), Finish, "every wave is through"},
		{"halted_is_idle", func() Rollout { r := run; r.State = Halted; return r }(), p,
			[]Member{edit(healthy("a", 0), func(m *Member) { m.Health.Warnings = 4 })}, after, Idle, ""},
		{"no_servers_advances_after_soak", run, p, nil, after, Advance, "wave 1 (50%) healthy: 0 of 0 servers have the level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Evaluate(tt.r, tt.p, tt.members, tt.now)
			if d.Verdict != tt.verdict || d.Reason != tt.reason {
				t.Errorf("Evaluate = %s %q, want %s %q", d.Verdict, d.Reason, tt.verdict, tt.reason)
			}
		})
	}
}

// TestEvaluateWaves: the signals are counted per wave, and the waves so
// far in the total.
func TestEvaluateWaves(t *testing.T) {
	waves, _ := ParseWaves("10,50,100")
	m2 := healthy("c", 2)
	m2.Level, m2.Health.Apply = 2, nil
	d := Evaluate(Rollout{State: Running, Waves: waves, Wave: 1, Started: t0, WaveStarted: t0}, DefaultPolicy(),
		[]Member{healthy("a", 0), healthy("b", 1), m2}, t0.Add(5*time.Hour))
	want := []Signals{{Servers: 1, Applied: 1}, {Servers: 1, Applied: 1}, {Servers: 1}}
	if !slices.Equal(d.Waves, want) || d.Total != (Signals{Servers: 2, Applied: 2}) {
		t.Errorf("waves %+v total %+v; want %+v and 2 servers, 2 applied", d.Waves, d.Total, want)
	}
}
