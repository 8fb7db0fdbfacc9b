package server

import (
	"net/netip"
	"testing"
	"time"
)

// TestGuessThrottleDrains: a source is held back after guessBurst wrong
// keys and earns a try back every guessEvery, on the portal's clock; other
// sources are not held back, and an IPv6 /64 counts as one source.
func TestGuessThrottleDrains(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	g := newGuessThrottle(func() time.Time { return now })
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := 0; i < guessBurst; i++ {
		if w := g.wait(a); w != 0 {
			t.Fatalf("after %d wrong keys: wait %s, want none", i, w)
		}
		g.fail(a)
	}
	if w := g.wait(a); w != guessEvery {
		t.Errorf("after %d wrong keys: wait %s, want %s", guessBurst, w, guessEvery)
	}
	if w := g.wait(b); w != 0 {
		t.Errorf("another source: wait %s, want none", w)
	}
	now = now.Add(guessEvery)
	if w := g.wait(a); w != 0 {
		t.Errorf("%s later: wait %s, want none", guessEvery, w)
	}
	g.fail(a)
	if w := g.wait(a); w != guessEvery {
		t.Errorf("one more wrong key: wait %s, want %s", w, guessEvery)
	}
	v6a, v6b := sourceAddr(netip.MustParseAddr("2001:db8:1:2::10")), sourceAddr(netip.MustParseAddr("2001:db8:1:2:ffff::1"))
	if v6a != v6b || v6a == sourceAddr(netip.MustParseAddr("2001:db8:1:3::10")) {
		t.Errorf("IPv6 sources: %s, %s; want one per /64", v6a, v6b)
	}
}
