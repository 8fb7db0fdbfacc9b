// Package fleet puts every server in exactly one state — up to date, out
// of date, unsupported or inactive — computed the same way for the web UI,
// the Nagios API and the metrics.
package fleet

import (
	"context"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/resolve"
	"github.com/kcare/kcare/internal/portal/store"
)

// State is a server's patch state.
type State = apitype.ServerState

// The states, in the order reports list them.
const (
	UpToDate    = apitype.StateUpToDate
	OutOfDate   = apitype.StateOutOfDate
	Unsupported = apitype.StateUnsupported
	Inactive    = apitype.StateInactive
)

// States lists every state.
var States = apitype.ServerStates

// DefaultInactiveAge is how long a server may go without checking in
// before it is inactive.
const DefaultInactiveAge = 48 * time.Hour

// Classify returns a server's state: inactive when it has not checked in
// within age (or never has), unsupported when no level exists for its
// kernel, out of date when the newest level it is allowed is newer than
// the applied one, else up to date.
func Classify(s *store.Server, now time.Time, age time.Duration, kernelKnown bool, allowed int) State {
	switch {
	case s.LastCheckin.IsZero() || now.Sub(s.LastCheckin) > age:
		return Inactive
	case !kernelKnown:
		return Unsupported
	case allowed > s.Level:
		return OutOfDate
	}
	return UpToDate
}

// Source is what an Evaluator reads: the servers' keys, the levels of
// their kernels and what their feeds show.
type Source interface {
	KeySettings(ctx context.Context, key string) (*store.Key, error)
	Feed(ctx context.Context, name string) (*store.Feed, error)
	Levels(ctx context.Context, buildID string) ([]store.Level, error)
	VisibleLevels(ctx context.Context, feed, buildID string) ([]store.Level, error)
}

// Evaluator classifies servers against a store, remembering per kernel
// and feed what it has looked up.
type Evaluator struct {
	Store       Source
	Now         time.Time
	InactiveAge time.Duration // 0: DefaultInactiveAge

	known   map[string]bool
	allowed map[string]int
	keys    map[string]*store.Key
	feeds   map[string]*store.Feed
}

// Classified is a server with its state and the level it is allowed.
type Classified struct {
	store.Server
	State   State
	Allowed int
}

// Classify returns the state of each server.
func (e *Evaluator) Classify(ctx context.Context, servers []store.Server) ([]Classified, error) {
	if e.known == nil {
		e.known, e.allowed = map[string]bool{}, map[string]int{}
		e.keys, e.feeds = map[string]*store.Key{}, map[string]*store.Feed{}
	}
	age := e.InactiveAge
	if age <= 0 {
		age = DefaultInactiveAge
	}
	out := make([]Classified, len(servers))
	for i := range servers {
		s := &servers[i]
		known, allowed := false, 0
		if s.BuildID != "" {
			var err error
			known, allowed, err = e.level(ctx, s)
			if err != nil {
				return nil, err
			}
		}
		out[i] = Classified{Server: *s, State: Classify(s, e.Now, age, known, allowed), Allowed: allowed}
	}
	return out, nil
}

// level returns whether any level exists for the server's kernel, and the
// newest its feed (its key's, or its IP license's as its last check-in
// recorded it) and its key's sticky date allow.
func (e *Evaluator) level(ctx context.Context, s *store.Server) (bool, int, error) {
	feedName, sticky := apitype.MainFeed, ""
	if s.LicenseFeed != "" {
		feedName = s.LicenseFeed
	}
	if s.Key != "" {
		k, ok := e.keys[s.Key]
		if !ok {
			var err error
			if k, err = e.Store.KeySettings(ctx, s.Key); err != nil {
				k = nil
			}
			e.keys[s.Key] = k
		}
		if k != nil {
			feedName, sticky = k.Feed, k.Sticky
		}
	}
	memo := feedName + "/" + sticky + "/" + s.BuildID
	if a, ok := e.allowed[memo]; ok {
		return e.known[s.BuildID], a, nil
	}
	if _, ok := e.known[s.BuildID]; !ok {
		all, err := e.Store.Levels(ctx, s.BuildID)
		if err != nil {
			return false, 0, err
		}
		e.known[s.BuildID] = len(all) > 0
	}
	feed, ok := e.feeds[feedName]
	if !ok {
		var err error
		if feed, err = e.Store.Feed(ctx, feedName); err != nil {
			feed = nil
		}
		e.feeds[feedName] = feed
	}
	allowed := 0
	if feed != nil && e.known[s.BuildID] {
		levels, err := e.Store.VisibleLevels(ctx, feedName, s.BuildID)
		if err != nil {
			return false, 0, err
		}
		l, err := resolve.Pick(levels, feed, resolve.Request{Sticky: sticky, Now: e.Now})
		if err == nil && l != nil {
			allowed = l.Level
		}
	}
	e.allowed[memo] = allowed
	return e.known[s.BuildID], allowed, nil
}

// Counts tallies states.
func Counts(cs []Classified) map[State]int {
	m := map[State]int{}
	for _, st := range States {
		m[st] = 0
	}
	for _, c := range cs {
		m[c.State]++
	}
	return m
}
