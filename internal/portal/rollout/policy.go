package rollout

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/portal/window"
)

// Policy is how a feed rolls out a new patchset: its waves, how long
// each soaks, what counts as unhealthy, and whether a halt rolls back by
// itself. Every field has a documented default (DefaultPolicy); an
// operator sets them per feed.
type Policy struct {
	// Waves; none releases a patchset to every server at once, with no
	// rollout (the default).
	Waves Waves `json:"waves"`
	// Soak is how long a wave runs before the next may start.
	Soak Duration `json:"soak"`
	// AutoRollback: a rollout that halts as unhealthy also rolls back,
	// ordering every server that has the patchset back to the level
	// below it.
	AutoRollback bool `json:"auto_rollback"`
	// The health gate: a rollout halts when, over the waves so far, more
	// servers than these (or more warnings, oopses) show the signal
	// since they applied the patchset.
	MaxFailures int `json:"max_failures"` // failed applies of the patchset's level
	MaxWarnings int `json:"max_warnings"` // new kernel warnings, summed
	MaxOopses   int `json:"max_oopses"`   // new kernel oopses, summed
	MaxTaints   int `json:"max_taints"`   // servers with a new taint flag (but K, O, E)
	MaxReboots  int `json:"max_reboots"`  // servers that rebooted with the patchset
	MaxSilent   int `json:"max_silent"`   // servers with the patchset that stopped checking in
	// SilentAfter is how long a server with the patchset may go without
	// checking in before it counts as silent.
	SilentAfter Duration `json:"silent_after"`
	// MinCheckedIn is the share of the waves' servers, in percent, that
	// must have checked in with the patchset's level before the next
	// wave starts.
	MinCheckedIn int `json:"min_checked_in"`
	// Window is the feed's maintenance window, as window.Parse reads it:
	// its servers' agents apply a new level by themselves (--auto-update)
	// only inside it. A key's own window takes its place. "" is none.
	Window string `json:"window,omitempty"`
	// UrgentSkipsWindow lets an urgent patchset be applied outside the
	// window.
	UrgentSkipsWindow bool `json:"urgent_skips_window,omitempty"`
}

// Defaults of a feed's policy.
const (
	DefaultSoak         = 4 * time.Hour // one run of every agent's timer
	DefaultSilentAfter  = 12 * time.Hour
	DefaultMinCheckedIn = 90
)

// DefaultPolicy is a feed's policy until an operator sets one: no waves;
// once waves are set, a 4 hour soak, auto-rollback, any failed apply, new
// warning, oops, taint, reboot or silent server halts, and 90% of the
// waves' servers must have checked in with the level.
func DefaultPolicy() Policy {
	return Policy{Soak: Duration(DefaultSoak), AutoRollback: true, SilentAfter: Duration(DefaultSilentAfter), MinCheckedIn: DefaultMinCheckedIn}
}

// Check refuses a policy with a field out of its bounds.
func (p Policy) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadPolicy, fmt.Sprintf(format, args...))
	}
	switch {
	case p.Soak < 0 || time.Duration(p.Soak) > 30*24*time.Hour:
		return bad("soak %s: 0 to 30 days", p.Soak)
	case p.SilentAfter < Duration(time.Minute) || time.Duration(p.SilentAfter) > 30*24*time.Hour:
		return bad("silent after %s: a minute to 30 days", p.SilentAfter)
	case p.MinCheckedIn < 0 || p.MinCheckedIn > 100:
		return bad("min checked in %d%%: 0 to 100", p.MinCheckedIn)
	}
	for name, v := range map[string]int{"max failures": p.MaxFailures, "max warnings": p.MaxWarnings, "max oopses": p.MaxOopses,
		"max taints": p.MaxTaints, "max reboots": p.MaxReboots, "max silent": p.MaxSilent} {
		if v < 0 || v > 1_000_000 {
			return bad("%s %d: 0 to 1000000", name, v)
		}
	}
	if _, err := window.Parse(p.Window); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPolicy, err)
	}
	if len(p.Waves) > 0 {
		if _, err := ParseWaves(p.Waves.String()); err != nil {
			return err
		}
	}
	return nil
}

// Duration is a time.Duration as JSON writes it: "4h0m0s".
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes waves as their percentages: [1, 10, 50, 100].
func (w Waves) MarshalJSON() ([]byte, error) {
	out := make([]json.Number, len(w))
	for i, bp := range w {
		out[i] = json.Number(Percent(bp))
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads waves as MarshalJSON writes them, checked as
// ParseWaves checks them.
func (w *Waves) UnmarshalJSON(b []byte) error {
	var nums []json.Number
	if err := json.Unmarshal(b, &nums); err != nil {
		return err
	}
	parts := make([]string, len(nums))
	for i, n := range nums {
		parts[i] = n.String()
	}
	v, err := ParseWaves(strings.Join(parts, ","))
	if err != nil {
		return err
	}
	*w = v
	return nil
}
