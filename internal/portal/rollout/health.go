package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/taint"
)

// Member is one server of a rollout's population, as its check-ins left
// it: a server in the rollout's feed whose kernel the patchset has a
// level for (Target).
type Member struct {
	ID          string
	Wave        int // its wave
	Target      int // the patchset's level for its kernel
	Level       int // the level it last reported for that kernel
	LastCheckin time.Time
	Health      *Health // nil: it never reported any
}

// Health is what a member's check-ins reported of its kernel.
type Health struct {
	BootID           string
	Taint            taint.Mask
	Warnings, Oopses int64 // -1 unknown
	Apply            *Apply
	Rebooted         time.Time // when a check-in first reported another boot; zero never
	RebootedLevel    int       // the level it had before that boot
}

// Apply is a member's last apply and its kernel's health just before.
type Apply struct {
	Level            int
	OK               bool
	At               time.Time
	BootID           string
	Taint            taint.Mask
	Warnings, Oopses int64
}

// Rollout is what Evaluate needs of a rollout.
type Rollout struct {
	State       State
	Waves       Waves
	Wave        int       // the current wave
	Started     time.Time // when the rollout began
	WaveStarted time.Time // when the current wave began
	Urgent      bool      // the patchset is urgent: no soak
}

// Signals counts the health signals of some servers.
type Signals struct {
	Servers  int // the servers counted
	Applied  int // those that checked in with the level since the rollout began
	Failures int // failed applies of the level
	Warnings int64
	Oopses   int64
	Taints   int // servers with a new unexpected taint flag
	Reboots  int // servers that rebooted with the level
	Silent   int // servers with the level that stopped checking in
}

// Problems says what s counts against a rollout's health: "1 new
// warning, 1 new taint"; "" when nothing.
func (s Signals) Problems() string {
	var out []string
	add := func(n int64, one, many string) {
		switch {
		case n == 1:
			out = append(out, "1 "+one)
		case n > 1:
			out = append(out, fmt.Sprintf("%d %s", n, many))
		}
	}
	add(int64(s.Failures), "failed apply", "failed applies")
	add(s.Warnings, "new warning", "new warnings")
	add(s.Oopses, "new oops", "new oopses")
	add(int64(s.Taints), "new taint", "new taints")
	add(int64(s.Reboots), "reboot", "reboots")
	add(int64(s.Silent), "silent", "silent")
	return strings.Join(out, ", ")
}

func (s *Signals) add(o Signals) {
	s.Servers += o.Servers
	s.Applied += o.Applied
	s.Failures += o.Failures
	s.Warnings += o.Warnings
	s.Oopses += o.Oopses
	s.Taints += o.Taints
	s.Reboots += o.Reboots
	s.Silent += o.Silent
}

// Measure returns the health signals of one member of r at now.
func Measure(m Member, r Rollout, p Policy, now time.Time) Signals {
	s := Signals{Servers: 1}
	has := m.Level >= m.Target
	if has && !m.LastCheckin.Before(r.Started) {
		s.Applied = 1
	}
	if has && now.Sub(m.LastCheckin) > time.Duration(p.SilentAfter) {
		s.Silent = 1
	}
	h := m.Health
	if h == nil {
		return s
	}
	if !h.Rebooted.IsZero() && !h.Rebooted.Before(r.Started) && h.RebootedLevel >= m.Target {
		s.Reboots = 1
	}
	// The apply's time is the agent's clock: an apply up to the clock
	// skew every signed answer allows before the rollout began counts.
	a := h.Apply
	if a == nil || a.At.Add(index.MaxClockSkew).Before(r.Started) {
		return s
	}
	if a.Level == m.Target && !a.OK {
		s.Failures = 1
	}
	// What changed since it applied the level, in the same boot.
	if !a.OK || a.Level < m.Target || !has || a.BootID != h.BootID {
		return s
	}
	if a.Warnings >= 0 && h.Warnings > a.Warnings {
		s.Warnings = h.Warnings - a.Warnings
	}
	if a.Oopses >= 0 && h.Oopses > a.Oopses {
		s.Oopses = h.Oopses - a.Oopses
	}
	if h.Taint.Added(a.Taint) != 0 {
		s.Taints = 1
	}
	return s
}

// Verdict is what Evaluate decided.
type Verdict string

// The verdicts.
const (
	Wait    Verdict = "wait"    // healthy so far; soaking, or waiting for check-ins
	Advance Verdict = "advance" // on to the next wave
	Finish  Verdict = "finish"  // the last wave is through: done
	Unwell  Verdict = "halt"    // unhealthy: halt (and roll back, by the policy)
	Idle    Verdict = "idle"    // not running: nothing to decide
)

// Decision is Evaluate's answer: what to do, why, and the signals of
// each wave (the members in it) and of the waves so far.
type Decision struct {
	Verdict Verdict
	Reason  string
	Waves   []Signals // by wave, every wave
	Total   Signals   // the waves up to the current one
}

// Evaluate decides what a rollout does next at now: halt when the waves
// so far are unhealthy by p's thresholds; else, when running, wait for
// the soak (none for an urgent patchset) and for MinCheckedIn percent of
// those waves' servers to have checked in with the level, then advance,
// or finish after the last wave. A paused rollout only halts; a halted,
// rolled back or done one is Idle.
func Evaluate(r Rollout, p Policy, members []Member, now time.Time) Decision {
	d := Decision{Verdict: Idle, Waves: make([]Signals, len(r.Waves))}
	for i := range members {
		m := &members[i]
		if m.Wave < 0 || m.Wave >= len(d.Waves) {
			continue
		}
		s := Measure(*m, r, p, now)
		d.Waves[m.Wave].add(s)
		if m.Wave <= r.Wave {
			d.Total.add(s)
		}
	}
	if r.State != Running && r.State != Paused {
		return d
	}
	t := d.Total
	var bad []string
	over := func(n int64, max int, one, many string) {
		if n > int64(max) {
			what := many
			if n == 1 {
				what = one
			}
			bad = append(bad, fmt.Sprintf("%d %s (at most %d)", n, what, max))
		}
	}
	over(int64(t.Failures), p.MaxFailures, "failed apply", "failed applies")
	over(t.Warnings, p.MaxWarnings, "new kernel warning", "new kernel warnings")
	over(t.Oopses, p.MaxOopses, "new kernel oops", "new kernel oopses")
	over(int64(t.Taints), p.MaxTaints, "server with a new taint", "servers with a new taint")
	over(int64(t.Reboots), p.MaxReboots, "server rebooted with the level", "servers rebooted with the level")
	over(int64(t.Silent), p.MaxSilent, "server stopped checking in", "servers stopped checking in")
	if len(bad) > 0 {
		d.Verdict, d.Reason = Unwell, strings.Join(bad, ", ")
		return d
	}
	d.Verdict = Wait
	if r.State == Paused {
		d.Reason = "paused"
		return d
	}
	if end := r.WaveStarted.Add(time.Duration(p.Soak)); !r.Urgent && now.Before(end) {
		d.Reason = "soaking until " + end.UTC().Format(time.RFC3339)
		return d
	}
	if need := (t.Servers*p.MinCheckedIn + 99) / 100; t.Applied < need {
		d.Reason = fmt.Sprintf("%d of %d servers have checked in with the level; %d%% (%d) are needed", t.Applied, t.Servers, p.MinCheckedIn, need)
		return d
	}
	if r.Wave+1 >= len(r.Waves) {
		d.Verdict, d.Reason = Finish, "every wave is through"
		return d
	}
	d.Verdict = Advance
	d.Reason = fmt.Sprintf("wave %d (%s%%) healthy: %d of %d servers have the level", r.Wave+1, Percent(r.Waves[r.Wave]), t.Applied, t.Servers)
	return d
}
