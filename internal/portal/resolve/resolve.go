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
	Now    time.Time
}

// ErrBadPrefix and ErrBadSticky report a request the portal cannot honour.
var (
	ErrBadPrefix = errors.New("unknown PREFIX")
	ErrBadSticky = errors.New("bad STICKY_PATCH date")
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
	delay, _, err := PrefixDelay(req.Prefix)
	if err != nil {
		return nil, err
	}
	if feed != nil {
		delay += feed.DeployAfter
	}
	cutoff := req.Now.Add(-delay)
	var sticky time.Time
	if req.Sticky != "" {
		end, err := config.StickyEnd(req.Sticky)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadSticky, req.Sticky, err)
		}
		sticky = end
		if sticky.Before(cutoff) {
			cutoff = sticky
		}
	}
	var best *store.Level
	for i := range levels {
		l := &levels[i]
		if l.Released.After(cutoff) {
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
	delay, _, err := PrefixDelay(req.Prefix)
	if err != nil {
		return time.Time{}, err
	}
	if feed != nil {
		delay += feed.DeployAfter
	}
	var sticky time.Time
	if req.Sticky != "" {
		if sticky, err = config.StickyEnd(req.Sticky); err != nil {
			return time.Time{}, fmt.Errorf("%w %q: %v", ErrBadSticky, req.Sticky, err)
		}
	}
	cutoff := req.Now.Add(-delay)
	var next time.Time
	for _, l := range levels {
		if !l.Released.After(cutoff) || (!sticky.IsZero() && l.Released.After(sticky)) {
			continue // allowed now, or never
		}
		if at := l.Released.Add(delay); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, nil
}
