// Package resolve decides which patch level a server may have: of the
// levels its feed shows, the newest one old enough for the feed's delay
// and the server's PREFIX, and not newer than its sticky date.
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
		d, err := config.ParseStickyDate(req.Sticky)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadSticky, req.Sticky, err)
		}
		sticky = d.Add(24 * time.Hour) // the whole sticky day counts
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
