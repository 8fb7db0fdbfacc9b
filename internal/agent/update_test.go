package agent

import (
	"bytes"
	"context"
	"errors"
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
}

func (p *fakePortal) Index(ctx context.Context, buildID, prefix, sticky string) ([]byte, []byte, error) {
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
			p.serve(t, portalKey, func(i *index.Index) { i.BuildID = "eb4fbcd037e7253717950bf2b93bd5566f47c56f"; i.Version = 20 }, data, sig)
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
