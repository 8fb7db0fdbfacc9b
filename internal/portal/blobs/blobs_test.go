package blobs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

func TestPutGet(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	data := []byte("a bundle's bytes")
	d, err := s.Put(data)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidDigest(d) {
		t.Fatalf("digest %q", d)
	}
	if d2, err := s.Put(data); err != nil || d2 != d {
		t.Errorf("second Put = %q, %v; want %q", d2, err, d)
	}
	got, err := s.Get(d)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get = %q, %v", got, err)
	}
	if _, err := s.Get(string(bytes.Repeat([]byte("0"), 64))); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Open("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(path) = %v, want ErrNotFound", err)
	}
	os.WriteFile(s.Path(d), []byte("changed"), 0o644)
	if _, err := s.Get(d); err == nil {
		t.Error("Get of a corrupted blob succeeded")
	}
}

// memRemote is a Remote in memory: a portal's database, as its replicas
// share it.
type memRemote struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (r *memRemote) PutBlob(ctx context.Context, d string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string][]byte{}
	}
	r.m[d] = append([]byte(nil), data...)
	return nil
}

func (r *memRemote) ReadBlob(ctx context.Context, d string, w io.Writer) (int64, error) {
	r.mu.Lock()
	data, ok := r.m[d]
	r.mu.Unlock()
	if !ok {
		return 0, ErrNotFound
	}
	n, err := w.Write(data)
	return int64(n), err
}

// TestRemote: a blob one replica puts is in the shared Remote; another
// replica, its cache empty, opens it, from a copy it checks and keeps; a
// copy in the Remote that does not match its digest is refused and not
// kept.
func TestRemote(t *testing.T) {
	shared := &memRemote{}
	a, b := Store{Dir: t.TempDir(), Remote: shared}, Store{Dir: t.TempDir(), Remote: shared}
	data := []byte("a bundle's bytes, put by one replica")
	d, err := a.Put(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shared.m[d], data) {
		t.Fatal("Put did not store the blob in the Remote")
	}
	f, err := b.Open(d)
	if err != nil {
		t.Fatalf("Open on the other replica: %v", err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Errorf("Open on the other replica read %q", got)
	}
	if _, err := os.Stat(b.Path(d)); err != nil {
		t.Errorf("the other replica's cache: %v", err)
	}

	bad := []byte("another bundle")
	d2, _ := Store{Dir: t.TempDir()}.Put(bad)
	shared.PutBlob(context.Background(), d2, []byte("not those bytes"))
	if _, err := b.Open(d2); err == nil || !strings.Contains(err.Error(), "the database holds bytes with sha256") {
		t.Errorf("Open of a corrupt shared blob = %v, want refused", err)
	}
	if _, err := os.Stat(b.Path(d2)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a corrupt shared blob was kept in the cache: %v", err)
	}
	if _, err := b.Open(strings.Repeat("e", 64)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open of a blob no one holds = %v, want ErrNotFound", err)
	}
}
