package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/trust"
)

const selfID = "5e1f0c2a9b8d7e6f5a4b3c2d"

// atLevel2 is an agent that updated to level 1 and then level 2 from a
// fake portal, as server selfID; the portal's last index was version 10.
func atLevel2(t *testing.T) (*env, *fakePortal) {
	t.Helper()
	e := newEnv(t, t.TempDir(), true)
	e.a.Keys = keyring(t, publisher, portalKey)
	p := &fakePortal{server: selfID}
	for v, level := range []int{1, 2} {
		data, sig := pack(t, publisher, manifest(level))
		p.serve(t, portalKey, func(i *index.Index) { i.Version = int64(9 + v) }, data, sig)
		if res, err := e.a.Update(context.Background(), p, UpdateOptions{}); err != nil || res.Manifest.Level != level {
			t.Fatalf("update to level %d: %v, %v", level, res, err)
		}
	}
	return e, p
}

// orderBack makes p offer level 1 with a rollback order from level 2 for
// this server, at version 11, edited by edit and signed by signer.
func orderBack(t *testing.T, p *fakePortal, signer *trust.Signer, edit func(*index.Index)) {
	t.Helper()
	data, sig := pack(t, publisher, manifest(1))
	p.serve(t, signer, func(i *index.Index) {
		i.Version, i.Latest = 11, 2
		i.Rollback = &index.Rollback{Level: 1, From: 2, ServerID: selfID, Reason: "the rollout of K20261127_01 in feed main halted: 1 new kernel warning"}
		if edit != nil {
			edit(i)
		}
	}, data, sig)
}

// TestRollbackOrderChecks: a rollback order is carried out only when it
// is the portal's, signed, fresh, for this server and from the level in
// effect. A forged order (another key, or a body changed after signing),
// a replayed one (an older index, an expired one, or one from another
// level) and another server's are each refused with its typed error,
// before anything is fetched or loaded, and nothing of it is recorded.
func TestRollbackOrderChecks(t *testing.T) {
	tests := []struct {
		name string
		prep func(t *testing.T, p *fakePortal)
		want error // nil: carried out
	}{
		{"good_order", func(t *testing.T, p *fakePortal) { orderBack(t, p, portalKey, nil) }, nil},
		{"forged_by_another_key", func(t *testing.T, p *fakePortal) { orderBack(t, p, stranger, nil) }, trust.ErrUnknownKey},
		{"changed_after_signing", func(t *testing.T, p *fakePortal) {
			orderBack(t, p, portalKey, func(i *index.Index) { i.Rollback.From = 3 })
			p.body = []byte(strings.Replace(string(p.body), `"from": 3`, `"from": 2`, 1))
		}, trust.ErrBadSignature},
		{"replayed_older_index", func(t *testing.T, p *fakePortal) {
			orderBack(t, p, portalKey, func(i *index.Index) { i.Version = 9 })
		}, index.ErrRollback},
		{"replayed_expired", func(t *testing.T, p *fakePortal) {
			orderBack(t, p, portalKey, func(i *index.Index) {
				i.Issued, i.Expires = testNow().Add(-80*time.Hour), testNow().Add(-8*time.Hour)
			})
		}, index.ErrExpired},
		{"replayed_from_another_level", func(t *testing.T, p *fakePortal) {
			orderBack(t, p, portalKey, func(i *index.Index) { i.Rollback.From, i.Latest = 3, 3 })
		}, ErrStaleOrder},
		{"another_servers_order", func(t *testing.T, p *fakePortal) {
			orderBack(t, p, portalKey, func(i *index.Index) { i.Rollback.ServerID = "0000aaaa0000aaaa0000aaaa" })
		}, index.ErrWrongRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, p := atLevel2(t)
			loads, downloads := e.k.Loads(), p.downloads
			tt.prep(t, p)
			_, err := e.a.Update(context.Background(), p, UpdateOptions{})
			st, _ := e.a.readState()
			if tt.want == nil {
				if err != nil || e.info(t).Level != 1 || st.Manifest.Level != 1 {
					t.Fatalf("Update with the order = %v, level %d; want level 1", err, e.info(t).Level)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Update = %v, want %v", err, tt.want)
			}
			if tt.want == ErrStaleOrder && !errors.Is(err, ErrDowngrade) {
				t.Errorf("a stale order's error %v does not match ErrDowngrade", err)
			}
			if got := e.info(t).Level; got != 2 || e.k.Loads() != loads || p.downloads != downloads {
				t.Errorf("after the refused order: level %d, %d loads, %d downloads; want level 2 and none", got, e.k.Loads()-loads, p.downloads-downloads)
			}
			if st.Rollback != nil {
				t.Errorf("the refused order was recorded: %+v", st.Rollback)
			}
		})
	}
}

// reboot gives e a fresh kernel tree over the same /var, as a reboot
// does: nothing loaded, a new boot id.
func (e *env) reboot(t *testing.T) {
	t.Helper()
	e.k.Close()
	for _, d := range []string{"sys", "proc"} {
		if err := os.RemoveAll(filepath.Join(e.a.Root, d)); err != nil {
			t.Fatal(err)
		}
	}
	k, err := fakekernel.New(e.a.Root, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	e.k, e.a.Loader = k, k
}

// TestBootLevelUnderOrder: an order learned but not yet carried out (the
// download failed) is kept with the record; the boot then re-applies the
// level it names from the cache, never the level it orders back.
func TestBootLevelUnderOrder(t *testing.T) {
	e, p := atLevel2(t)
	orderBack(t, p, portalKey, nil)
	p.blobs = nil // the portal goes away before the download
	if _, err := e.a.Update(context.Background(), p, UpdateOptions{}); err == nil || e.info(t).Level != 2 {
		t.Fatalf("Update with no bundle to fetch = %v at level %d; want a failure at level 2", err, e.info(t).Level)
	}
	st, _ := e.a.readState()
	if r := st.Rollback; r == nil || r.From != 2 || r.Level != 1 || r.ServerID != selfID {
		t.Fatalf("record after the order was learned: rollback %+v", st.Rollback)
	}
	e.reboot(t)
	res, err := e.a.UpdateLocal(context.Background())
	if err != nil || res.Manifest.Level != 1 {
		t.Fatalf("UpdateLocal after the reboot = %v, %v; want level 1", res, err)
	}
	if got := e.info(t); got.State != "applied" || got.Level != 1 || e.k.Modules()[0] != "kcare_test_l1" {
		t.Errorf("after the boot: %s level %d, modules %v; want level 1 alone", got.State, got.Level, e.k.Modules())
	}
	st, _ = e.a.readState()
	if st.Rollback != nil || st.Request == nil {
		t.Errorf("record after going back: rollback %+v, request %+v; want no order and the portal's request", st.Rollback, st.Request)
	}
}

// TestBootAfterUnhealthyApply: a level whose apply logged a kernel
// warning is not re-applied at boot: the last healthy level is.
func TestBootAfterUnhealthyApply(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	e.apply(t, 1)
	e.k.WarnOnLoad("kcare_test_l2")
	e.apply(t, 2)
	e.reboot(t)
	res, err := e.a.UpdateLocal(context.Background())
	if err != nil || res.Manifest.Level != 1 {
		t.Fatalf("UpdateLocal after the reboot = %v, %v; want level 1", res, err)
	}
	if got := e.info(t).Level; got != 1 {
		t.Errorf("level %d after the boot, want 1", got)
	}
}

// TestBootNothingToGoBackTo: with the level under an order and nothing
// below it cached, the boot re-applies nothing and says why.
func TestBootNothingToGoBackTo(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	e.a.Keys = keyring(t, publisher, portalKey)
	p := &fakePortal{server: selfID}
	data, sig := pack(t, publisher, manifest(2))
	p.serve(t, portalKey, nil, data, sig)
	if _, err := e.a.Update(context.Background(), p, UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	orderBack(t, p, portalKey, nil)
	p.blobs = nil
	e.a.Update(context.Background(), p, UpdateOptions{})
	e.reboot(t)
	_, err := e.a.UpdateLocal(context.Background())
	want := "level 2 is under the portal's order back to level 1, and no level to go back to is cached; nothing re-applied: nothing to do"
	if !errors.Is(err, ErrNothingToDo) || err.Error() != want {
		t.Errorf("UpdateLocal = %v, want %q", err, want)
	}
	if n := e.k.Loads(); n != 0 {
		t.Errorf("%d modules loaded at boot, want none", n)
	}
}

// TestBootHealthyLevel: a healthy level with no order is re-applied as
// before, and its cached bundle must be the one recorded.
func TestBootHealthyLevel(t *testing.T) {
	e, _ := atLevel2(t)
	e.reboot(t)
	if res, err := e.a.UpdateLocal(context.Background()); err != nil || res.Manifest.Level != 2 {
		t.Fatalf("UpdateLocal = %v, %v; want level 2", res, err)
	}
	st, _ := e.a.readState()
	if p := st.Previous; p == nil || p.Level != 1 || p.Digest != bundle.Digest(mustPack(t, 1)) {
		t.Errorf("level 2's previous = %+v, want level 1's bundle", p)
	}
}

func mustPack(t *testing.T, level int) []byte {
	data, _ := pack(t, publisher, manifest(level))
	return data
}
