package ui

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/portal/store"
)

var stateCellRE = regexp.MustCompile(`<span class="state state-[a-z]+">([a-z]+)</span>`)

// TestServerStateFilterFollowsPortalClock: the servers page's state filter
// counts check-in ages on the portal's clock, as the state column does, so
// that a server the column calls inactive is the one the filter finds.
func TestServerStateFilterFollowsPortalClock(t *testing.T) {
	p := newPortal(t)
	ctx := context.Background()
	if err := p.st.AddKey(ctx, &store.Key{Key: "clock", Created: p.now()}); err != nil {
		t.Fatal(err)
	}
	h := p.newHost(t)
	if err := h.register("clock", "web-clock"); err != nil {
		t.Fatal(err)
	}
	if err := h.c.CheckIn(ctx, apitype.CheckIn{Hostname: "web-clock", Release: fakekernel.Release, BuildID: fakekernel.BuildID}); err != nil {
		t.Fatal(err)
	}
	b := p.client(t)
	b.signIn("alice", alicePassword)
	states := func(query string) []string {
		t.Helper()
		code, body, _ := b.get("/admin/servers?" + query)
		if code != 200 {
			t.Fatalf("GET /admin/servers?%s: %d", query, code)
		}
		var out []string
		for _, m := range stateCellRE.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	if got := states("state=inactive"); len(got) != 0 {
		t.Errorf("just checked in: state=inactive lists %v, want none", got)
	}
	if got := states(""); len(got) != 1 || got[0] == "inactive" {
		t.Errorf("just checked in: state column %v, want one server, not inactive", got)
	}
	p.advance(49 * time.Hour)
	b.signIn("alice", alicePassword) // the session idled out meanwhile
	if got := states("state=inactive"); len(got) != 1 || got[0] != "inactive" {
		t.Errorf("49h later on the portal's clock: state=inactive lists %v, want [inactive]", got)
	}
	if got := states("state=unsupported"); len(got) != 0 {
		t.Errorf("49h later: state=unsupported lists %v, want none (the server is inactive)", got)
	}
}
