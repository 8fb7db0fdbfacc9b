package server

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/httperr"
)

// Wrong credentials a source may send before it is throttled, and how
// fast it earns another try: a leaky bucket of guessBurst that drains one
// wrong key every guessEvery. A typo or a revoked key a monitor still
// polls stays well inside it; guessing a key does not.
const (
	guessBurst   = 10
	guessEvery   = 6 * time.Second
	guessSources = 100000 // sources remembered at most
)

// guessThrottle counts wrong activation keys (and reseller tokens) per
// source, for every route that takes one: registration, the Nagios key
// paths, the per-key patchset path and the reseller path share it. A
// source is an IPv4 address or an IPv6 /64, so one attacker does not hold
// back anyone else.
type guessThrottle struct {
	now func() time.Time

	mu      sync.Mutex
	sources map[netip.Addr]*guessBucket
}

type guessBucket struct {
	level float64 // wrong keys not yet drained
	at    time.Time
}

func newGuessThrottle(now func() time.Time) *guessThrottle {
	return &guessThrottle{now: now, sources: map[netip.Addr]*guessBucket{}}
}

// drain brings b up to now.
func (b *guessBucket) drain(now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.level = max(b.level-float64(d)/float64(guessEvery), 0)
	}
	b.at = now
}

// wait returns how long src must wait before its next try; 0 if it may
// try now.
func (g *guessThrottle) wait(src netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.sources[src]
	if b == nil {
		return 0
	}
	b.drain(g.now())
	if b.level < guessBurst {
		return 0
	}
	return time.Duration((b.level - guessBurst + 1) * float64(guessEvery))
}

// fail counts a wrong key from src.
func (g *guessThrottle) fail(src netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	b := g.sources[src]
	if b == nil {
		if len(g.sources) >= guessSources {
			g.prune(now)
		}
		b = &guessBucket{at: now}
		g.sources[src] = b
	}
	b.drain(now)
	b.level++
}

// prune forgets drained sources, and then any, to stay in guessSources.
func (g *guessThrottle) prune(now time.Time) {
	for src, b := range g.sources {
		if b.drain(now); b.level == 0 {
			delete(g.sources, src)
		}
	}
	for src := range g.sources {
		if len(g.sources) < guessSources {
			break
		}
		delete(g.sources, src)
	}
}

// requestSource is the source a request counts against.
func requestSource(r *http.Request) netip.Addr {
	ip, err := netip.ParseAddr(httperr.RemoteIP(r))
	if err != nil {
		return netip.Addr{}
	}
	return sourceAddr(ip)
}

// wrongKey counts a wrong activation key or reseller token from r's
// source.
func (s *Server) wrongKey(r *http.Request) { s.guesses.fail(requestSource(r)) }

// tooManyAttempts answers a throttled source.
func tooManyAttempts(wait time.Duration) error {
	e := httperr.TooMany(wait, "")
	e.Msg = string(apitype.CodeTooManyAttempts)
	return e
}
