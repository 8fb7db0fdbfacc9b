package tlscert

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadOrMake(t *testing.T) {
	data := t.TempDir()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	hosts := []string{"localhost", "127.0.0.1", "eportal.example.com", "192.0.2.10"}
	first, err := LoadOrMake(data, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Made {
		t.Error("the first call did not make a certificate")
	}
	if got, want := first.Leaf.NotAfter, now.Add(Validity); !got.Equal(want) {
		t.Errorf("NotAfter %v, want %v", got, want)
	}
	for _, h := range hosts {
		if err := first.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("the certificate does not cover %s: %v", h, err)
		}
	}
	for _, p := range []string{first.CertPath, first.KeyPath} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want 0600", p, fi.Mode(), err)
		}
	}

	// The next start, a year later, reuses it as it is.
	again, err := LoadOrMake(data, hosts[:2], now.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if again.Made || !bytes.Equal(again.CertPEM, first.CertPEM) || Pin(again.Leaf) != Pin(first.Leaf) {
		t.Error("the second call made a new certificate")
	}
	if _, err := LoadOrMake(data, []string{"other.example.com"}, now); !errors.Is(err, ErrNotCovered) {
		t.Errorf("a host the certificate lacks: %v, want ErrNotCovered", err)
	}
	if pin, err := PinFile(filepath.Join(data, Dir, CertFile)); err != nil || pin != Pin(first.Leaf) {
		t.Errorf("PinFile: %q, %v; want %q", pin, err, Pin(first.Leaf))
	}
}
