// Package rollout decides how a feed releases a patchset to its servers:
// in waves, each a stable share of the servers ranked by a hash of their
// id; advancing after a soak time when the waves so far are healthy;
// halting by itself when they are not. It holds the rules only, as pure
// functions of their inputs and a clock: the portal's core reads the
// store, calls them, and records what they decide.
package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Full is a wave of every server, in basis points (hundredths of a
// percent), the unit waves are kept in.
const Full = 10000

// Waves are a rollout's waves: each the share of the servers (in basis
// points) that may have the patchset once it is reached, increasing, the
// last Full.
type Waves []int

// ErrBadWaves and ErrBadPolicy are policies the portal refuses.
var (
	ErrBadWaves  = errors.New("bad waves")
	ErrBadPolicy = errors.New("bad rollout policy")
)

// ParseWaves reads waves as an operator writes them: percentages,
// comma-separated, increasing, ending with 100 ("1,10,50,100",
// "0.5,5,100"), with at most two decimals. "" is no waves: the feed
// releases a patchset to every server at once.
func ParseWaves(s string) (Waves, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var w Waves
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSuffix(strings.TrimSpace(f), "%")
		bp, err := parseBasisPoints(f)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %q: %v", ErrBadWaves, s, f, err)
		}
		if len(w) > 0 && bp <= w[len(w)-1] {
			return nil, fmt.Errorf("%w %q: each wave must be larger than the one before", ErrBadWaves, s)
		}
		w = append(w, bp)
	}
	if w[len(w)-1] != Full {
		return nil, fmt.Errorf("%w %q: the last wave must be 100", ErrBadWaves, s)
	}
	if len(w) > 20 {
		return nil, fmt.Errorf("%w %q: at most 20 waves", ErrBadWaves, s)
	}
	return w, nil
}

// parseBasisPoints reads a percentage with at most two decimals, above 0
// and at most 100, as basis points.
func parseBasisPoints(f string) (int, error) {
	whole, frac, _ := strings.Cut(f, ".")
	if len(frac) > 2 || whole == "" {
		return 0, errors.New("a percentage with at most two decimals")
	}
	for len(frac) < 2 {
		frac += "0"
	}
	n, err := strconv.Atoi(whole + frac)
	if err != nil || strings.ContainsAny(whole+frac, "+-") {
		return 0, errors.New("a percentage with at most two decimals")
	}
	if n <= 0 || n > Full {
		return 0, errors.New("above 0 and at most 100")
	}
	return n, nil
}

// String writes w as ParseWaves reads it.
func (w Waves) String() string {
	parts := make([]string, len(w))
	for i, bp := range w {
		parts[i] = Percent(bp)
	}
	return strings.Join(parts, ",")
}

// Percent writes basis points as a percentage: "1", "0.5", "12.25".
func Percent(bp int) string {
	s := strconv.Itoa(bp / 100)
	if r := bp % 100; r != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%02d", r), "0")
	}
	return s
}

// Size is how many of n servers a wave of bp basis points takes:
// ceil(n·bp/10000), and at least one, so that a small fleet still has a
// canary. None of none.
func Size(n, bp int) int {
	if n == 0 {
		return 0
	}
	return max(1, (n*bp+Full-1)/Full)
}

// Rank orders server ids by a hash of each (SHA-256 of the id, its first
// eight bytes as a number; the id breaks a tie) and returns each id's
// place, from 0. The order depends on nothing but the ids, so a server
// keeps its place among the same servers whatever the rollout, and a
// server that joins moves the others by at most one place.
func Rank(ids []string) map[string]int {
	type key struct {
		h  uint64
		id string
	}
	keys := make([]key, len(ids))
	for i, id := range ids {
		sum := sha256.Sum256([]byte(id))
		keys[i] = key{binary.BigEndian.Uint64(sum[:8]), id}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.h != b.h {
			if a.h < b.h {
				return -1
			}
			return 1
		}
		return strings.Compare(a.id, b.id)
	})
	out := make(map[string]int, len(keys))
	for i, k := range keys {
		out[k.id] = i
	}
	return out
}

// WaveOf returns the wave a server at rank (of n servers) belongs to:
// the first whose Size takes it. A rank of n or more (a server the
// ranking has not seen yet) is in the last wave.
func (w Waves) WaveOf(rank, n int) int {
	for i, bp := range w {
		if rank < Size(n, bp) {
			return i
		}
	}
	return len(w) - 1
}

// State is where a rollout is.
type State string

// The states.
const (
	// Running: the waves up to the current one get the patchset; the
	// next one follows when these are healthy and have soaked.
	Running State = "running"
	// Paused by an operator: as Running, but it does not advance. A
	// paused rollout still halts when unhealthy.
	Paused State = "paused"
	// Halted: unhealthy, or halted by an operator. No server gets the
	// patchset anew; those that have it keep it.
	Halted State = "halted"
	// RolledBack: no server may have the patchset; those that have it
	// are ordered back to the level below.
	RolledBack State = "rolled-back"
	// Done: every server may have the patchset, as if there were no
	// rollout.
	Done State = "done"
)

// States lists every state, in the order a rollout goes through them.
var States = []State{Running, Paused, Halted, RolledBack, Done}

// Valid reports whether s is one of States.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Active reports whether a rollout in state s still gates its patchset.
func (s State) Active() bool { return s != Done }

// Admits reports whether a rollout in state s, at wave current, lets a
// server in wave have its patchset: hasIt says the server already
// reports the patchset's level (or a higher one) for its kernel. A
// server never loses a level it has by being outside the waves; only a
// rollback takes it back.
func (s State) Admits(current, wave int, hasIt bool) bool {
	switch s {
	case Done:
		return true
	case RolledBack:
		return false
	case Halted:
		return hasIt
	}
	return hasIt || wave <= current
}

// Action is an operator's action on a rollout.
type Action string

// The actions.
const (
	Pause    Action = "pause"    // running -> paused
	Resume   Action = "resume"   // paused, halted or rolled back -> running, the current wave's soak from now
	Promote  Action = "promote"  // to the next wave now, or done from the last; health and soak not waited for
	Rollback Action = "rollback" // -> rolled back: every server ordered back
	Halt     Action = "halt"     // -> halted: no server gets it anew
)

// Actions lists every action.
var Actions = []Action{Pause, Resume, Promote, Rollback, Halt}

// ErrNotAllowed is an action the rollout's state does not allow.
var ErrNotAllowed = errors.New("not allowed in this state")

// Apply returns the state and wave an action takes a rollout at (s,
// wave) of n waves to, or ErrNotAllowed.
func (a Action) Apply(s State, wave, n int) (State, int, error) {
	bad := func() (State, int, error) {
		return s, wave, fmt.Errorf("%s a rollout that is %s: %w", a, s, ErrNotAllowed)
	}
	switch a {
	case Pause:
		if s != Running {
			return bad()
		}
		return Paused, wave, nil
	case Resume:
		if s != Paused && s != Halted && s != RolledBack {
			return bad()
		}
		return Running, wave, nil
	case Promote:
		if s == Done || s == RolledBack {
			return bad()
		}
		if wave+1 >= n {
			return Done, wave, nil
		}
		return s, wave + 1, nil
	case Rollback:
		if s == RolledBack {
			return bad()
		}
		return RolledBack, wave, nil
	case Halt:
		if s != Running && s != Paused {
			return bad()
		}
		return Halted, wave, nil
	}
	return s, wave, fmt.Errorf("unknown action %q", a)
}
