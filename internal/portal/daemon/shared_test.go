package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kcare/kcare/internal/portal/daemon"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/trust"
)

// TestSharedPortalKey: replicas on one PostgreSQL database sign with one
// index key, whatever their data directories: the first keeps the key its
// data directory had (its agents trust it), the others, with none, take
// it from the database; a replica whose data directory holds another key
// refuses to start. They share the metrics salt too.
func TestSharedPortalKey(t *testing.T) {
	dsn := storetest.FreshPostgres(t)
	ctx := context.Background()
	open := func() store.Store { return storetest.Replica(t, dsn) }
	// The portal that was alone, with its key.
	first := t.TempDir()
	priv, _, err := trust.GenerateKey("kcare eportal index key", "")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(first, "portal.key"), priv, 0o600)
	s1, err := daemon.SharedPortalKey(ctx, open(), first)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := trust.ReadSigner(priv)
	if s1.Fingerprint() != want.Fingerprint() {
		t.Errorf("the first replica signs with %s, not its own key %s", s1.Fingerprint(), want.Fingerprint())
	}
	second := t.TempDir()
	s2, err := daemon.SharedPortalKey(ctx, open(), second)
	if err != nil || s2.Fingerprint() != want.Fingerprint() {
		t.Errorf("a second replica: %v, %v; want key %s", s2, err, want.Fingerprint())
	}
	if got, _ := os.ReadFile(filepath.Join(second, "portal.pub")); !bytes.Contains(got, []byte("PUBLIC KEY")) {
		t.Errorf("the second replica's portal.pub: %q", got)
	}

	other := t.TempDir()
	otherKey, _, _ := trust.GenerateKey("another portal's key", "")
	os.WriteFile(filepath.Join(other, "portal.key"), otherKey, 0o600)
	if _, err := daemon.SharedPortalKey(ctx, open(), other); !errors.Is(err, daemon.ErrKeyMismatch) {
		t.Errorf("a replica with another portal.key: %v, want ErrKeyMismatch", err)
	}

	a, err := daemon.SharedMetricsSalt(ctx, open(), first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := daemon.SharedMetricsSalt(ctx, open(), second)
	if err != nil || !bytes.Equal(a, b) || len(a) < 16 {
		t.Errorf("metrics salts %x and %x (%v), want one of at least 16 bytes", a, b, err)
	}
}
