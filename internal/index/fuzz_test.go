package index

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzVerify feeds arbitrary bodies, each with a good signature over it, to
// Verify. It must never panic, must refuse with one of the package's typed
// errors, and whatever it accepts must hold every promise of an index: for
// this kernel, current, not rolled back, its bundle fetchable by digest and
// bounded in size. Sign must take an accepted index back unchanged.
func FuzzVerify(f *testing.F) {
	portal := newSigner(f, "kcare portal")
	keys := keyring(f, portal)
	golden, err := os.ReadFile(filepath.Join("testdata", "index.golden"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	for _, idx := range []*Index{
		testIndex(),
		with(func(i *Index) { i.Level = nil; i.Latest = 0 }),
		with(func(i *Index) { i.Version = 41; i.Level.CVEs = nil }),
		with(func(i *Index) { i.BuildID, i.Request.BuildID = otherBuild, otherBuild }),
		with(func(i *Index) { i.Issued, i.Expires = now.Add(-48*time.Hour), now.Add(-time.Hour) }),
		with(func(i *Index) { i.Rollback = &Rollback{Level: 3, From: 4, ServerID: testServerID} }),
		with(func(i *Index) { i.Request.Sticky = "2026-11-01" }),
		with(func(i *Index) { i.Request = nil }),
	} {
		body, _ := mustSign(f, idx, portal)
		f.Add(body)
	}
	g := string(golden)
	f.Add([]byte(strings.Replace(g, `"latest": 4`, `"latest": 2`, 1)))
	f.Add([]byte(strings.Replace(g, `"level": {`, `"level": null, "x": {`, 1)))
	f.Add([]byte(strings.Replace(g, `"cves": [`, `"cves": null, "y": [`, 1)))
	f.Add([]byte(`{"type":"kcare-index","version":41,"issued":"2026-11-21T10:00:00+02:00","expires":"2026-11-22T10:00:00-01:00","build_id":"eb4fbcd037e7253717950bf2b93bd5566f47c56f","level":null,"latest":0}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, body []byte) {
		const last = 41
		v := verifier(keys)
		v.LastVersion = last
		idx, err := v.Verify(body, signBytes(t, portal, body))
		if err != nil {
			if idx != nil {
				t.Fatalf("got an index with error %v", err)
			}
			for _, typed := range []error{ErrMalformed, ErrTooLarge, ErrWrongKernel, ErrWrongRequest, ErrExpired, ErrFuture, ErrRollback} {
				if errors.Is(err, typed) {
					return
				}
			}
			t.Fatalf("refused a well-signed body with an untyped error: %v", err)
		}

		switch {
		case idx.Type != Type:
			t.Fatalf("accepted type %q", idx.Type)
		case idx.BuildID != testBuildID:
			t.Fatalf("accepted build-id %q, want %s", idx.BuildID, testBuildID)
		case idx.Request == nil || *idx.Request != (Request{BuildID: testBuildID, Prefix: testPrefix, Sticky: testSticky}):
			t.Fatalf("accepted an index for request %v", idx.Request)
		case idx.Rollback != nil && (idx.Rollback.ServerID != testServerID || idx.Level == nil || idx.Rollback.Level != idx.Level.Level):
			t.Fatalf("accepted rollback order %+v with level %v", idx.Rollback, idx.Level)
		case idx.Version < last || v.LastVersion != idx.Version:
			t.Fatalf("accepted version %d after %d; LastVersion now %d", idx.Version, last, v.LastVersion)
		case !now.Before(idx.Expires):
			t.Fatalf("accepted an index that expired at %s", idx.Expires)
		case idx.Issued.After(now.Add(MaxClockSkew)):
			t.Fatalf("accepted an index issued at %s", idx.Issued)
		case idx.Latest < 0:
			t.Fatalf("accepted latest %d", idx.Latest)
		}
		if l := idx.Level; l != nil {
			switch {
			case l.Level < 1 || l.Level > idx.Latest:
				t.Fatalf("accepted level %d with latest %d", l.Level, idx.Latest)
			case !sha256Hex.MatchString(l.Digest):
				t.Fatalf("accepted digest %q", l.Digest)
			case l.URL != "/blobs/sha256/"+l.Digest:
				t.Fatalf("accepted url %q for digest %s", l.URL, l.Digest)
			case l.Size <= 0 || l.Size > 64<<20:
				t.Fatalf("accepted size %d", l.Size)
			case l.Name == "" || strings.ContainsAny(l.Name, "/\x00\n\x1b"):
				t.Fatalf("accepted name %q", l.Name)
			}
		}

		again, sig, err := Sign(idx, portal)
		if err != nil {
			t.Fatalf("Sign refused an index Verify accepted: %v", err)
		}
		v.LastVersion = last
		back, err := v.Verify(again, sig)
		if err != nil {
			t.Fatalf("Verify of the re-signed index: %v", err)
		}
		if diff := cmp.Diff(idx, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("re-signing changed the index (-first +again):\n%s", diff)
		}
	})
}
