// Package resolve decides which patch level a server may have: of the
// levels its feed shows, the newest one old enough for the feed's delay
// and the server's PREFIX, and not newer than its sticky date; and when
// the server must be ordered back to it from a higher one.
package resolve

import (
	"errors"
	"fmt"
	"time"

	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/portal/store"
)

// Request is what a server asks with.
type Request struct {
	Prefix string // "", "test", "12h", "24h", "48h"
	Sticky string // "", a date STICKY_PATCH accepts; "KEY" must be resolved by the caller
	// Delay is KernelCare's UPDATE_DELAY as sent ("24h", "2d"): levels
	// released within it are held back, beside the feed's and PREFIX's.
	Delay string
	// Patchset is KernelCare's STICKY_PATCHSET: levels of newer patchsets
	// than this one are held back. Order ranks every patchset, oldest 0.
	Patchset string
	Order    map[string]int
	Now      time.Time
}

// ErrBadPrefix and ErrBadSticky report a request the portal cannot honour.
var (
	ErrBadPrefix = errors.New("unknown PREFIX")
	ErrBadSticky = errors.New("bad STICKY_PATCH date")
	// ErrBadDelay and ErrBadPatchset report an UPDATE_DELAY or a
	// STICKY_PATCHSET the portal cannot honour.
	ErrBadDelay    = errors.New("bad UPDATE_DELAY")
	ErrBadPatchset = errors.New("unknown STICKY_PATCHSET")
)

// PrefixDelay returns how long PREFIX holds levels back, and whether it
// admits test-channel levels.
func PrefixDelay(prefix string) (delay time.Duration, test bool, err error) {
	switch prefix {
	case "":
		return 0, false, nil
	case "test":
		return 0, true, nil
	case "12h":
		return 12 * time.Hour, false, nil
	case "24h":
		return 24 * time.Hour, false, nil
	case "48h":
		return 48 * time.Hour, false, nil
	}
	return 0, false, fmt.Errorf("%w %q (want test, 12h, 24h or 48h)", ErrBadPrefix, prefix)
}

// Pick returns the newest of levels (ascending or not) that req and feed
// allow, or nil. Test-channel levels must already be filtered out by the
// caller unless the feed or prefix admits them.
func Pick(levels []store.Level, feed *store.Feed, req Request) (*store.Level, error) {
	delay, sticky, maxRank, err := req.limits(feed)
	if err != nil {
		return nil, err
	}
	cutoff := req.Now.Add(-delay)
	if !sticky.IsZero() && sticky.Before(cutoff) {
		cutoff = sticky
	}
	var best *store.Level
	for i := range levels {
		l := &levels[i]
		if l.Released.After(cutoff) {
			continue
		}
		if r, ok := req.Order[l.Patchset]; maxRank >= 0 && (!ok || r > maxRank) {
			continue
		}
		if best == nil || l.Level > best.Level {
			best = l
		}
	}
	return best, nil
}

// RollbackFrom returns the level a server is to be ordered back from to
// picked, the level it is allowed now: the level its last check-in
// reported for the kernel buildID, when that is above picked. It returns 0
// when no order is due: no level is allowed (an order names a level to
// return to), the server last reported another kernel or none, or it is
// at or below picked.
//
// The rule needs no record of why the allowed level fell, so it covers
// every way the portal lowers one: an operator's undeploy or disabled
// patchset (a withdrawn level), a key's sticky date moved back, a key or
// license moved to a feed at a lower level or with a longer delay. A
// server that went above its allowed level by its own doing (a level
// applied by hand, a PREFIX since removed) is ordered back too: the
// portal's answer is the one it follows.
func RollbackFrom(srv *store.Server, buildID string, picked *store.Level) int {
	if srv == nil || picked == nil || srv.BuildID != buildID || srv.Level <= picked.Level {
		return 0
	}
	return srv.Level
}

// NextChange returns the earliest time after req.Now at which Pick's
// answer for the same levels, feed and request can change by the clock
// alone: when a level held back by the delays becomes old enough. It
// returns the zero time when none ever will (every level is allowed
// already, or held back for good by the sticky date). A bad prefix or
// sticky date is Pick's error.
func NextChange(levels []store.Level, feed *store.Feed, req Request) (time.Time, error) {
	delay, sticky, maxRank, err := req.limits(feed)
	if err != nil {
		return time.Time{}, err
	}
	cutoff := req.Now.Add(-delay)
	var next time.Time
	for _, l := range levels {
		if r, ok := req.Order[l.Patchset]; maxRank >= 0 && (!ok || r > maxRank) {
			continue // held back by STICKY_PATCHSET for good
		}
		if !l.Released.After(cutoff) || (!sticky.IsZero() && l.Released.After(sticky)) {
			continue // allowed now, or never
		}
		if at := l.Released.Add(delay); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, nil
}

// limits are what req and feed hold levels back with, as Pick applies
// them: the delay after release, the end of the sticky day (zero: none),
// and the rank of the newest patchset allowed (-1: any).
func (req Request) limits(feed *store.Feed) (delay time.Duration, sticky time.Time, maxRank int, err error) {
	delay, _, err = PrefixDelay(req.Prefix)
	if err != nil {
		return 0, time.Time{}, 0, err
	}
	if feed != nil {
		delay += feed.DeployAfter
	}
	if req.Delay != "" {
		d, err := config.ParseDelay(req.Delay)
		if err != nil {
			return 0, time.Time{}, 0, fmt.Errorf("%w: %v", ErrBadDelay, err)
		}
		delay += d
	}
	maxRank = -1
	if req.Patchset != "" {
		r, ok := req.Order[req.Patchset]
		if !ok {
			return 0, time.Time{}, 0, fmt.Errorf("%w %q", ErrBadPatchset, req.Patchset)
		}
		maxRank = r
	}
	if req.Sticky != "" {
		if sticky, err = config.StickyEnd(req.Sticky); err != nil {
			return 0, time.Time{}, 0, fmt.Errorf("%w %q: %v", ErrBadSticky, req.Sticky, err)
		}
	}
	return delay, sticky, maxRank, nil
}
