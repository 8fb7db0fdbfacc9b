package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/trust"
)

// portalKey signs indexes; the agent's keyring trusts it and publisher.
var portalKey = mustSigner()

// fakePortal is a small in-process portal: it serves one signed index and
// the bundles by path.
type fakePortal struct {
	body, sig []byte
	blobs     map[string][]byte
	downloads int
	polls     int
	server    string // the server id requests authenticate as
}

func (p *fakePortal) Server() string { return p.server }

func (p *fakePortal) IndexFor(ctx context.Context, r index.Request) ([]byte, []byte, error) {
	return p.body, p.sig, nil
}

func (p *fakePortal) Download(ctx context.Context, path string, size int64, progress func(done, total int64)) ([]byte, error) {
	p.downloads++
	b, ok := p.blobs[path]
	if !ok {
		return nil, errors.New("404")
	}
	return io.ReadAll(index.LimitedReader(bytes.NewReader(b), size))
}

// serve makes the portal answer with an index naming level (signed by
// signer) whose bundle is data, announced as size bytes.
func (p *fakePortal) serve(t *testing.T, signer *trust.Signer, edit func(*index.Index), data, sig []byte) {
	t.Helper()
	d := bundle.Digest(data)
	b, err := bundle.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	now := testNow()
	idx := &index.Index{
		Type: index.Type, Version: 10, Issued: now, Expires: now.Add(time.Hour),
		BuildID: fakekernel.BuildID, Latest: b.Manifest.Level,
		Request: &index.Request{BuildID: fakekernel.BuildID},
		Level: &index.Level{
			Level: b.Manifest.Level, Name: b.Manifest.Name, Patchset: "K20261127_01", Digest: d,
			Size: int64(len(data)), URL: index.BlobPath(d), Signature: string(sig),
			EffectiveRelease: b.Manifest.EffectiveRelease, CVEs: b.Manifest.CVEs, Released: b.Manifest.Released,
		},
	}
	if edit != nil {
		edit(idx)
	}
	p.body, p.sig, err = index.Sign(idx, signer)
	if err != nil {
		t.Fatal(err)
	}
	if p.blobs == nil {
		p.blobs = map[string][]byte{}
	}
	p.blobs[index.BlobPath(d)] = data
}

func TestUpdate(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	e.a.Keys = keyring(t, publisher, portalKey)
	p := &fakePortal{}
	data, sig := pack(t, publisher, manifest(1))
	p.serve(t, portalKey, nil, data, sig)
	res, err := e.a.Update(context.Background(), p, UpdateOptions{})
	if err != nil || res.Manifest.Level != 1 {
		t.Fatalf("Update = %v, %v; want level 1", res, err)
	}
	if _, err := e.a.Update(context.Background(), p, UpdateOptions{}); !errors.Is(err, ErrNothingToDo) {
		t.Errorf("second Update = %v, want ErrNothingToDo", err)
	}
	if p.downloads != 1 {
		t.Errorf("%d downloads, want 1 (the second update has nothing to fetch)", p.downloads)
	}
	data, sig = pack(t, publisher, manifest(2))
	p.serve(t, portalKey, func(i *index.Index) { i.Version = 11 }, data, sig)
	if res, err := e.a.Update(context.Background(), p, UpdateOptions{}); err != nil || res.Manifest.Level != 2 {
		t.Fatalf("Update to level 2 = %v, %v", res, err)
	}
	st, err := e.a.CheckStatus(context.Background(), p, UpdateOptions{})
	if err != nil || st.Applied != 2 || st.Available != 2 {
		t.Errorf("CheckStatus = %+v, %v; want applied 2 available 2", st, err)
	}
}

func TestUpdateNoLevel(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	e.a.Keys = keyring(t, publisher, portalKey)
	p := &fakePortal{}
	data, sig := pack(t, publisher, manifest(1))
	p.serve(t, portalKey, func(i *index.Index) { i.Level = nil }, data, sig)
	if _, err := e.a.Update(context.Background(), p, UpdateOptions{}); !errors.Is(err, ErrNothingToDo) {
		t.Errorf("Update with no allowed level = %v, want ErrNothingToDo", err)
	}
}

// TestUpdateAttacks: each attack is refused with its typed error, and
// nothing is loaded.
func TestUpdateAttacks(t *testing.T) {
	tests := []struct {
		name string
		prep func(t *testing.T, p *fakePortal, data, sig []byte)
		want error
	}{
		{"replayed_older_index", func(t *testing.T, p *fakePortal, data, sig []byte) {
			p.serve(t, portalKey, func(i *index.Index) { i.Version = 9 }, data, sig)
		}, index.ErrRollback},
		{"expired_index", func(t *testing.T, p *fakePortal, data, sig []byte) {
			p.serve(t, portalKey, func(i *index.Index) {
				i.Issued = testNow().Add(-96 * time.Hour)
				i.Expires = testNow().Add(-24 * time.Hour)
				i.Version = 20
			}, data, sig)
		}, index.ErrExpired},
		{"other_build_id", func(t *testing.T, p *fakePortal, data, sig []byte) {
			p.serve(t, portalKey, func(i *index.Index) {
				i.BuildID, i.Request.BuildID = "eb4fbcd037e7253717950bf2b93bd5566f47c56f", "eb4fbcd037e7253717950bf2b93bd5566f47c56f"
				i.Version = 20
			}, data, sig)
		}, index.ErrWrongKernel},
		{"unknown_key", func(t *testing.T, p *fakePortal, data, sig []byte) {
			p.serve(t, stranger, func(i *index.Index) { i.Version = 20 }, data, sig)
		}, trust.ErrUnknownKey},
		{"bundle_larger_than_announced", func(t *testing.T, p *fakePortal, data, sig []byte) {
			p.serve(t, portalKey, func(i *index.Index) { i.Version = 20; i.Level.Size = int64(len(data)) - 100 }, data, sig)
		}, bundle.ErrTooLarge},
		{"bundle_other_digest", func(t *testing.T, p *fakePortal, data, sig []byte) {
			other, _ := pack(t, publisher, manifest(2))
			p.serve(t, portalKey, func(i *index.Index) { i.Version = 20 }, data, sig)
			p.blobs[index.BlobPath(bundle.Digest(data))] = other
		}, bundle.ErrDigestMismatch},
		{"publisher_signature_bad", func(t *testing.T, p *fakePortal, data, sig []byte) {
			_, sig2 := pack(t, publisher, manifest(2))
			p.serve(t, portalKey, func(i *index.Index) { i.Version = 20 }, data, sig2)
		}, trust.ErrBadSignature},
		{"no_request_stated", func(t *testing.T, p *fakePortal, data, sig []byte) {
			p.serve(t, portalKey, func(i *index.Index) { i.Version = 20; i.Request = nil }, data, sig)
		}, index.ErrWrongRequest},
		{"answer_for_a_sticky_date", func(t *testing.T, p *fakePortal, data, sig []byte) {
			p.serve(t, portalKey, func(i *index.Index) { i.Version = 20; i.Request.Sticky = "2026-11-01" }, data, sig)
		}, index.ErrWrongRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, t.TempDir(), true)
			e.a.Keys = keyring(t, publisher, portalKey)
			// The agent accepted version 10 before.
			if err := e.a.writeIndexState(indexState{Version: 10}); err != nil {
				t.Fatal(err)
			}
			p := &fakePortal{}
			data, sig := pack(t, publisher, manifest(1))
			tt.prep(t, p, data, sig)
			_, err := e.a.Update(context.Background(), p, UpdateOptions{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Update error = %v, want %v", err, tt.want)
			}
			if n := e.k.Loads(); n != 0 {
				t.Errorf("%d modules loaded, want none", n)
			}
		})
	}
}

// TestUpdateDowngrade: a verified index offering a level below the one in
// effect is applied only with a rollback order for this server, or when
// this host's own PREFIX or STICKY_PATCH asked for it.
func TestUpdateDowngrade(t *testing.T) {
	const self = "5e1f0c2a9b8d7e6f5a4b3c2d"
	tests := []struct {
		name   string
		byHand bool            // level 3 was applied with --apply, not fetched
		server string          // this server's id; "" under an IP license
		before UpdateOptions   // the request level 3 was fetched with
		now    UpdateOptions   // the request now
		order  *index.Rollback // in the index offering level 1
		want   error           // nil: level 1 is applied
	}{
		{"no_order", false, self, UpdateOptions{}, UpdateOptions{}, nil, ErrDowngrade},
		{"order_for_this_server", false, self, UpdateOptions{}, UpdateOptions{},
			&index.Rollback{Level: 1, From: 3, ServerID: self}, nil},
		{"order_for_another_server", false, self, UpdateOptions{}, UpdateOptions{},
			&index.Rollback{Level: 1, From: 3, ServerID: "0000aaaa0000aaaa0000aaaa"}, index.ErrWrongRequest},
		{"order_for_ip_licensed_server", false, "", UpdateOptions{}, UpdateOptions{},
			&index.Rollback{Level: 1, From: 3, ServerID: "ip-192-0-2-7"}, nil},
		{"registered_server_refuses_ip_order", false, self, UpdateOptions{}, UpdateOptions{},
			&index.Rollback{Level: 1, From: 3, ServerID: "ip-192-0-2-7"}, index.ErrWrongRequest},
		{"ip_licensed_server_refuses_registered_order", false, "", UpdateOptions{}, UpdateOptions{},
			&index.Rollback{Level: 1, From: 3, ServerID: self}, index.ErrWrongRequest},
		{"host_sticky_moved_back", false, self, UpdateOptions{}, UpdateOptions{Sticky: "2026-11-01"}, nil, nil},
		{"host_prefix_set", false, self, UpdateOptions{}, UpdateOptions{Prefix: "48h"}, nil, nil},
		{"host_sticky_unchanged", false, self, UpdateOptions{Sticky: "2026-11-20"}, UpdateOptions{Sticky: "2026-11-20"}, nil, ErrDowngrade},
		{"host_sticky_key_unchanged", false, self, UpdateOptions{Sticky: "KEY"}, UpdateOptions{Sticky: "KEY"}, nil, ErrDowngrade},
		{"by_hand_no_order", true, self, UpdateOptions{}, UpdateOptions{}, nil, ErrDowngrade},
		{"by_hand_host_sticky_date", true, self, UpdateOptions{}, UpdateOptions{Sticky: "2026-11-01"}, nil, nil},
		{"by_hand_host_sticky_key", true, self, UpdateOptions{}, UpdateOptions{Sticky: "KEY"}, nil, ErrDowngrade},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, t.TempDir(), true)
			e.a.Keys = keyring(t, publisher, portalKey)
			p := &fakePortal{server: tt.server}
			asked := func(o UpdateOptions) func(*index.Index) {
				return func(i *index.Index) { i.Request.Prefix, i.Request.Sticky = o.Prefix, o.Sticky }
			}
			if tt.byHand {
				e.apply(t, 3)
			} else {
				data, sig := pack(t, publisher, manifest(3))
				p.serve(t, portalKey, asked(tt.before), data, sig)
				if res, err := e.a.Update(context.Background(), p, tt.before); err != nil || res.Manifest.Level != 3 {
					t.Fatalf("update to level 3: %v, %v", res, err)
				}
			}
			loads := e.k.Loads()
			data, sig := pack(t, publisher, manifest(1))
			p.serve(t, portalKey, func(i *index.Index) {
				asked(tt.now)(i)
				i.Latest, i.Rollback = 3, tt.order
			}, data, sig)
			_, err := e.a.Update(context.Background(), p, tt.now)
			want, wantLoads := 1, loads+1
			if tt.want != nil {
				want, wantLoads = 3, loads
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Update = %v, want %v", err, tt.want)
			}
			if got := e.info(t).Level; got != want {
				t.Errorf("level %d after the update, want %d", got, want)
			}
			if n := e.k.Loads(); n != wantLoads {
				t.Errorf("%d modules loaded, want %d", n-loads, wantLoads-loads)
			}
		})
	}
}

// IndexIfChanged answers as a portal does from memory: no body for the
// tag of the answer it has.
func (p *fakePortal) IndexIfChanged(ctx context.Context, r index.Request, tag string) ([]byte, []byte, string, error) {
	p.polls++
	now := fmt.Sprintf(`"%x"`, sha256.Sum256(p.body))
	if tag == now {
		return nil, nil, tag, nil
	}
	return p.body, p.sig, now, nil
}
