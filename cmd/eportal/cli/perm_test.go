package cli

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
)

// TestDataDirPermissions: under umask 022, everything eportal makes (the
// data directory, the database and its WAL files, the portal key, blobs,
// sync state, import spool, export archive) is 0700 for directories and
// 0600 for files.
func TestDataDirPermissions(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)

	publisher := bundletest.Signer("kcare permissions test publisher")
	pub, _ := publisher.PublicKey()
	root := t.TempDir()
	// The administrator places the publisher keys, privately.
	newData := func(name string) string {
		d := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(d, "publishers"), 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "publishers", "publisher.pub"), pub, 0o600)
		return d
	}
	upData, mirData, gapData := newData("upstream"), newData("mirror"), newData("airgap")
	os.Chmod(root, 0o700)

	// Upstream: eportal serve makes its database and key; an admin publishes.
	up := startServe(t, "--data", upData)
	token := adminToken(t, upData)
	data, sig := bundletest.Bundle(t, publisher, 1, bundletest.Options{Released: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)})
	publishOver(t, http.DefaultClient, "http://"+up.Addr, token, data, sig)
	check := func(when string) {
		t.Helper()
		var bad []string
		for p, m := range modes(t, root) {
			want := os.FileMode(0o600)
			if m.IsDir() {
				want = os.ModeDir | 0o700
			}
			if m != want {
				bad = append(bad, fmt.Sprintf("%s is %v, want %v", p, m, want))
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Errorf("%s:\n%s", when, strings.Join(bad, "\n"))
		}
	}
	for _, p := range []string{"eportal.db", "eportal.db-wal", "eportal.db-shm", "portal.key", "portal.pub", "blobs/sha256"} {
		if _, err := os.Stat(filepath.Join(upData, p)); err != nil {
			t.Errorf("after serve and a publish: %v", err)
		}
	}
	check("while eportal serve runs")

	// A mirror syncs from it; the upstream exports and another portal imports.
	t.Setenv("KCARE_UPSTREAM_TOKEN", token)
	if _, stderr, code := run(t, "", "sync", "--data", mirData, "--upstream", "http://"+up.Addr); code != 0 {
		t.Fatalf("sync: %s", stderr)
	}
	for _, p := range []string{"sync.lock", "sync-status.json", "partial", "blobs/sha256"} {
		if _, err := os.Stat(filepath.Join(mirData, p)); err != nil {
			t.Errorf("after sync: %v", err)
		}
	}
	archive := filepath.Join(root, "levels.tar")
	if _, stderr, code := run(t, "", "export", "--data", upData, "--out", archive); code != 0 {
		t.Fatalf("export: %s", stderr)
	}
	if _, stderr, code := run(t, "", "import", "--data", gapData, archive); code != 0 {
		t.Fatalf("import: %s", stderr)
	}
	// An admin command on a data directory that does not exist yet.
	if _, stderr, code := run(t, "", "key", "add", "--data", filepath.Join(root, "fresh", "data")); code != 0 {
		t.Fatalf("key add: %s", stderr)
	}
	up.Stop(t)
	check("after sync, export and import")
}
