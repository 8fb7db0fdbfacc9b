package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/trust"
)

// TestPoll: a poll with nothing new gets no body; a changed answer is
// verified, and asks for an update only for an urgent level above the
// one in effect or a rollback order from it; a forged answer is refused.
func TestPoll(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	e.a.Keys = keyring(t, publisher, portalKey)
	p := &fakePortal{server: selfID}
	data, sig := pack(t, publisher, manifest(1))
	p.serve(t, portalKey, nil, data, sig)
	if _, err := e.a.Update(context.Background(), p, UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll := func() PollResult {
		t.Helper()
		r, err := e.a.Poll(context.Background(), p, UpdateOptions{})
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		return r
	}
	if r := poll(); !r.Changed || r.Act != "" {
		t.Errorf("first poll: %+v, want changed (no tag yet), nothing to do", r)
	}
	if r := poll(); r.Changed || r.Act != "" {
		t.Errorf("poll with nothing new: %+v, want unchanged", r)
	}
	data2, sig2 := pack(t, publisher, manifest(2))
	p.serve(t, portalKey, func(i *index.Index) { i.Version = 11 }, data2, sig2)
	if r := poll(); !r.Changed || r.Act != "" {
		t.Errorf("a new level, not urgent: %+v, want changed, no hurry", r)
	}
	p.serve(t, portalKey, func(i *index.Index) { i.Version = 12; i.Level.Urgent = true }, data2, sig2)
	if r := poll(); r.Act != "urgent level 2 is out" {
		t.Errorf("an urgent level: %+v", r)
	}
	if e.k.Loads() != 1 || p.downloads != 1 {
		t.Errorf("polls loaded %d modules and downloaded %d bundles; want only the update's", e.k.Loads()-1, p.downloads-1)
	}
	p.serve(t, stranger, func(i *index.Index) { i.Version = 13; i.Level.Urgent = true }, data2, sig2)
	if _, err := e.a.Poll(context.Background(), p, UpdateOptions{}); !errors.Is(err, trust.ErrUnknownKey) {
		t.Errorf("a poll answered by another key: %v, want ErrUnknownKey", err)
	}
	// An order from the level in effect.
	e.apply(t, 3)
	p.serve(t, portalKey, func(i *index.Index) {
		i.Version, i.Latest = 14, 3
		i.Rollback = &index.Rollback{Level: 2, From: 3, ServerID: selfID}
	}, data2, sig2)
	if r := poll(); r.Act != "the portal orders level 3 back to level 2" {
		t.Errorf("a rollback order: %+v", r)
	}
}
