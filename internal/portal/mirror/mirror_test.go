package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/mirror"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/trust"
)

func signer(name string) (*trust.Signer, *trust.Keyring) {
	s := bundletest.Signer(name)
	pub, err := s.PublicKey()
	if err != nil {
		panic(err)
	}
	k, err := trust.ReadKeyring(pub)
	if err != nil {
		panic(err)
	}
	return s, k
}

var publisher, publishers = signer("kcare mirror test publisher")

// portal is an in-process eportal.
type portal struct {
	st    store.Store
	bs    blobs.Store
	srv   *server.Server
	http  *httptest.Server
	token string
}

func newPortal(t *testing.T, wrap func(http.Handler) http.Handler) *portal {
	return newPortalOn(t, "sqlite", wrap)
}

func newPortalOn(t *testing.T, kind string, wrap func(http.Handler) http.Handler) *portal {
	t.Helper()
	st := storetest.Open(t, kind)
	idx, _ := signer("kcare mirror test portal")
	p := &portal{st: st, bs: blobs.Store{Dir: t.TempDir()}}
	p.srv = server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: p.bs, IndexKey: idx, Publishers: publishers, Now: testNow})})
	h := p.srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	p.http = httptest.NewServer(h)
	t.Cleanup(p.http.Close)
	ctx := context.Background()
	hash, _ := auth.HashPassword("mirror password")
	st.AddUser(ctx, &store.User{Name: "mirror", PasswordHash: hash, Role: "readonly", Created: testNow()})
	p.token = auth.NewSecret()
	st.AddToken(ctx, &store.Token{Hash: auth.HashSecret(p.token), User: "mirror", Created: testNow()})
	return p
}

// testNow is the clock of the portals and syncers in these tests: fixed,
// so that no test depends on the day it runs.
func testNow() time.Time { return time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC) }

// bundleFor makes a signed bundle of level for the fake kernel, padded to
// about size bytes.
func bundleFor(t *testing.T, s *trust.Signer, level, size int) (data, sig []byte) {
	return bundletest.Bundle(t, s, level, bundletest.Options{Released: testNow().Add(-72 * time.Hour), Pad: size})
}

func (p *portal) publish(t *testing.T, level, size int) string {
	t.Helper()
	data, sig := bundleFor(t, publisher, level, size)
	l, err := p.srv.Core().Publish(context.Background(), core.CLI, data, sig, core.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Digest
}

func (p *portal) syncer(t *testing.T, up *portal, dir string) *mirror.Syncer {
	return &mirror.Syncer{Upstream: up.http.URL, Token: up.token, Store: p.st, Blobs: p.bs, Publishers: publishers, DataDir: dir, Now: testNow}
}

func (p *portal) levels(t *testing.T) []int {
	t.Helper()
	ls, err := p.st.Levels(context.Background(), fakekernel.BuildID)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, l := range ls {
		out = append(out, l.Level)
	}
	return out
}

func blobCount(t *testing.T, bs blobs.Store) int {
	n := 0
	filepath.Walk(bs.Dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestSyncAndRefuseTampered(t *testing.T) {
	for _, kind := range storetest.Kinds {
		t.Run(kind, func(t *testing.T) { testSyncAndRefuseTampered(t, kind) })
	}
}

func testSyncAndRefuseTampered(t *testing.T, kind string) {
	up := newPortalOn(t, kind, nil)
	mir := newPortalOn(t, kind, nil)
	ctx := context.Background()
	up.publish(t, 1, 0)
	s := mir.syncer(t, up, t.TempDir())
	st, err := s.Sync(ctx)
	if err != nil || st.Fetched != 1 {
		t.Fatalf("first sync: %+v, %v; want one level fetched", st, err)
	}
	if got := mir.levels(t); fmt.Sprint(got) != "[1]" {
		t.Errorf("mirror levels %v, want [1]", got)
	}
	if st, err := s.Sync(ctx); err != nil || st.Fetched != 0 {
		t.Errorf("second sync: %+v, %v; want nothing new", st, err)
	}

	// A level slipped into the upstream with a signature by another key,
	// published in the same instant as level 1, the mirror's cursor: it is
	// listed (once it was missed) and refused.
	stranger, _ := signer("not the publisher")
	data, sig := bundleFor(t, stranger, 2, 0)
	d, _ := up.bs.Put(data)
	if err := up.st.AddLevel(ctx, &store.Level{BuildID: fakekernel.BuildID, KernelID: kernel.KernelID(fakekernel.Version), Release: fakekernel.Release,
		Level: 2, Patchset: "K20261127_02", Channel: "stable", Digest: d, Size: int64(len(data)), Signature: sig,
		EffectiveRelease: fakekernel.Release, Released: testNow().Add(-time.Hour), Published: testNow()}); err != nil {
		t.Fatal(err)
	}
	st, err = s.Sync(ctx)
	if err != nil || len(st.Refused) != 1 || !strings.Contains(st.Refused[0], "unknown key") {
		t.Errorf("sync of a tampered level: %+v, %v; want it refused for the unknown key", st, err)
	}
	if got := mir.levels(t); fmt.Sprint(got) != "[1]" {
		t.Errorf("mirror levels after the tampered one %v, want [1]", got)
	}
	if _, err := mir.bs.Get(d); !errors.Is(err, blobs.ErrNotFound) {
		t.Errorf("the tampered bundle is stored on the mirror: %v", err)
	}
	read, _ := mirror.ReadStatus(s.DataDir)
	if read.LastSuccess.IsZero() || !read.Healthy(testNow(), time.Hour) {
		t.Errorf("status %+v, want healthy", read)
	}
}

// TestSyncResumes: a download broken off half-way is resumed by the next
// sync with a Range request, and ends with the right digest.
func TestSyncResumes(t *testing.T) {
	var cut atomic.Bool
	cut.Store(true)
	var ranges atomic.Int32
	up := newPortal(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/blobs/") {
				if r.Header.Get("Range") != "" {
					ranges.Add(1)
				}
				if cut.Swap(false) {
					// Send the headers and half the bundle, then drop the connection.
					hj := w.(http.Hijacker)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					conn, buf, _ := hj.Hijack()
					body := rec.Body.Bytes()
					fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n", len(body))
					buf.Write(body[:len(body)/2])
					buf.Flush()
					conn.Close()
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	mir := newPortal(t, nil)
	digest := up.publish(t, 1, 8<<20)
	dir := t.TempDir()
	s := mir.syncer(t, up, dir)
	if _, err := s.Sync(context.Background()); err == nil {
		t.Fatal("sync over a broken connection succeeded")
	}
	if fi, err := os.Stat(filepath.Join(dir, "partial", digest)); err != nil || fi.Size() == 0 {
		t.Fatalf("no partial download kept: %v", err)
	}
	st, err := s.Sync(context.Background())
	if err != nil || st.Fetched != 1 {
		t.Fatalf("resumed sync: %+v, %v", st, err)
	}
	if ranges.Load() != 1 {
		t.Errorf("%d Range requests, want 1 (the resume)", ranges.Load())
	}
	if _, err := mir.bs.Get(digest); err != nil {
		t.Errorf("mirror's copy: %v", err)
	}
}

// TestSyncTwiceAtOnce: two syncs of one mirror at the same time leave one
// copy of each bundle and each level once.
func TestSyncTwiceAtOnce(t *testing.T) {
	up := newPortal(t, nil)
	mir := newPortal(t, nil)
	for l := 1; l <= 3; l++ {
		up.publish(t, l, 1<<20)
	}
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = mir.syncer(t, up, dir).Sync(context.Background())
		}(i)
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("syncs: %v, %v", errs[0], errs[1])
	}
	if got := mir.levels(t); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("mirror levels %v, want [1 2 3]", got)
	}
	if n := blobCount(t, mir.bs); n != 3 {
		t.Errorf("%d blobs on the mirror, want 3", n)
	}
}

func TestExportImport(t *testing.T) {
	up := newPortal(t, nil)
	up.publish(t, 1, 0)
	up.publish(t, 2, 0)
	var archive bytes.Buffer
	n, err := mirror.Export(context.Background(), up.st, up.bs, mirror.ExportOptions{}, &archive)
	if err != nil || n != 2 {
		t.Fatalf("Export: %d, %v", n, err)
	}

	// One flipped byte anywhere: nothing is imported.
	for _, at := range []int{100, archive.Len() / 3, archive.Len() / 2, archive.Len() - 2000} {
		bad := bytes.Clone(archive.Bytes())
		bad[at] ^= 0x20
		empty := newPortal(t, nil)
		if _, err := mirror.Import(context.Background(), empty.st, empty.bs, publishers, bytes.NewReader(bad)); err == nil {
			t.Errorf("import with byte %d flipped succeeded", at)
		}
		if got := empty.levels(t); len(got) != 0 || blobCount(t, empty.bs) != 0 {
			t.Errorf("byte %d flipped: levels %v and %d blobs stored, want none", at, got, blobCount(t, empty.bs))
		}
	}

	dst := newPortal(t, nil)
	res, err := mirror.Import(context.Background(), dst.st, dst.bs, publishers, bytes.NewReader(archive.Bytes()))
	if err != nil || res.Stored != 2 {
		t.Fatalf("Import: %+v, %v", res, err)
	}
	res, err = mirror.Import(context.Background(), dst.st, dst.bs, publishers, bytes.NewReader(archive.Bytes()))
	if err != nil || res.Stored != 0 || res.Already != 2 {
		t.Errorf("second Import: %+v, %v; want all already here", res, err)
	}
	_, others := signer("another publisher")
	if _, err := mirror.Import(context.Background(), newPortal(t, nil).st, blobs.Store{Dir: t.TempDir()}, others, bytes.NewReader(archive.Bytes())); !errors.Is(err, mirror.ErrBadArchive) {
		t.Errorf("import trusting another publisher: %v, want ErrBadArchive", err)
	}
}
