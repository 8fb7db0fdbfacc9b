package blobs

import (
	"bytes"
	"errors"
	"os"
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
