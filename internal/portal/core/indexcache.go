package core

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/index"
)

// The signed index answers are shared: every server that asks the same
// question (build-id, PREFIX, sticky date as sent and as resolved,
// UPDATE_DELAY, STICKY_PATCHSET) in the same feed, with the same rollout
// gates and maintenance window, while the store is at the same version,
// gets the same signed body, which states the question it answers and
// names no server. The
// agent checks the question it asked (index.Verifier), so one signature
// serves them all. An answer that must order one server back (a
// rollback order names its server) is signed for that server alone and
// not kept.
const (
	// indexCacheMaxEntries bounds the answers kept; past it, the expired
	// ones go, and if that is not enough, all of them.
	indexCacheMaxEntries = 4096
	// indexCacheMaxAge is the longest an answer is served after it was
	// signed (at most a tenth of the index's lifetime): so long the
	// expiry an agent sees may be earlier than a fresh one's.
	indexCacheMaxAge = 10 * time.Minute
)

// indexKey is the question a shared answer answers.
type indexKey struct {
	buildID, feed string
	prefix        string // as sent
	sticky        string // as sent: "", a date, or KEY
	resolved      string // the sticky date the answer applies: KEY's is the key's
	delay         string // UPDATE_DELAY, as sent
	patchset      string // STICKY_PATCHSET, as sent
	version       int64  // the store's version
	// gate says, for each active rollout of the feed with a level for the
	// kernel, whether the server may have it: servers in the same waves
	// share answers, whatever their ids (Core.gate).
	gate string
	// window is the server's maintenance window as written: its key's,
	// or its feed's.
	window string
}

// signedIndex is one answer: the index as signed, and what the portal
// needs to add a rollback order to it.
type signedIndex struct {
	ready chan struct{} // closed once the fields below are set
	err   error

	idx       index.Index // as signed: no server, no rollback order
	picked    int         // the level it names; 0 none
	body, sig []byte
	sigHeader string // sig as index.SignatureHeader carries it
	etag      string
	issued    time.Time
	until     time.Time // the answer holds before this instant
}

// fresh reports whether the answer still holds at now.
func (e *signedIndex) fresh(now time.Time) bool {
	return e.err == nil && !now.Before(e.issued) && now.Before(e.until)
}

// indexCache holds the shared answers. It is safe for concurrent use.
type indexCache struct {
	mu      sync.Mutex
	entries map[indexKey]*signedIndex
}

// get returns the answer to k at now: the one kept, or one that compute
// fills in (once, however many ask at the same moment). An answer that
// failed is not kept, and every caller waiting for it gets its error.
func (c *indexCache) get(k indexKey, now time.Time, compute func(e *signedIndex)) *signedIndex {
	c.mu.Lock()
	if e := c.entries[k]; e != nil {
		select {
		case <-e.ready:
			if e.fresh(now) {
				c.mu.Unlock()
				return e
			}
			delete(c.entries, k)
		default:
			c.mu.Unlock()
			<-e.ready
			return e
		}
	}
	if c.entries == nil {
		c.entries = map[indexKey]*signedIndex{}
	}
	if len(c.entries) >= indexCacheMaxEntries {
		c.sweep(now)
	}
	e := &signedIndex{ready: make(chan struct{})}
	c.entries[k] = e
	c.mu.Unlock()

	compute(e)
	if e.err == nil {
		e.sigHeader, e.etag = index.EncodeSignature(e.sig), etag(e.body)
	}
	close(e.ready)
	if e.err != nil {
		c.mu.Lock()
		if c.entries[k] == e {
			delete(c.entries, k)
		}
		c.mu.Unlock()
	}
	return e
}

// sweep drops the answers that no longer hold, and all of them if that
// leaves the cache full. c.mu is held.
func (c *indexCache) sweep(now time.Time) {
	for k, e := range c.entries {
		select {
		case <-e.ready:
			if !e.fresh(now) {
				delete(c.entries, k)
			}
		default:
		}
	}
	if len(c.entries) >= indexCacheMaxEntries {
		clear(c.entries)
	}
}

// etag is the entity tag of an index body: a hash of its bytes, quoted.
func etag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}
