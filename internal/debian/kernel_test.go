package debian

import (
	"os"
	"path/filepath"
	"testing"
)

// TestNewestCached: offline, the harness falls back on the cache, which
// holds older kernels fetched by release too, and other families'.
func TestNewestCached(t *testing.T) {
	cache := t.TempDir()
	for _, k := range []struct{ release, version string }{
		{"6.1.0-47-amd64", "6.1.170-3"},
		{"6.1.0-57-amd64", "6.1.192-3"},
		{"6.1.0-9-amd64", "6.1.27-1"},
		{"6.12.118+deb13-amd64", "6.12.118-1"},
	} {
		root := filepath.Join(cache, "kernel", k.release+"_"+k.version)
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		abi := k.release[:len(k.release)-len("-amd64")]
		m := `{"abi":"` + abi + `","release":"` + k.release + `","version":"` + k.version + `"}`
		if err := os.WriteFile(filepath.Join(root, markerName), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A tree without its marker is not complete, whatever its name.
	os.MkdirAll(filepath.Join(cache, "kernel", "6.1.0-99-amd64_6.1.999-1"), 0o755)

	k, ok := NewestCached(cache, "bookworm-6.1")
	if !ok || k.Release != "6.1.0-57-amd64" || k.Version != "6.1.192-3" {
		t.Fatalf("NewestCached = %+v, %v; want 6.1.0-57-amd64 (6.1.192-3)", k, ok)
	}
	if want := filepath.Join(cache, "kernel", "6.1.0-57-amd64_6.1.192-3"); k.Root != want {
		t.Errorf("root %s; want %s", k.Root, want)
	}
	if k, ok := NewestCached(cache, "trixie-6.12"); !ok || k.Release != "6.12.118+deb13-amd64" {
		t.Errorf("NewestCached trixie-6.12 = %+v, %v", k, ok)
	}
	if _, ok := NewestCached(t.TempDir(), "bookworm-6.1"); ok {
		t.Error("an empty cache gave a kernel")
	}
	if k, ok := cachedRelease(cache, "6.1.0-47-amd64"); !ok || k.Version != "6.1.170-3" {
		t.Errorf("cachedRelease 6.1.0-47-amd64 = %+v, %v", k, ok)
	}
}
