package debkernel

import (
	"os"
	"path/filepath"
	"testing"
)

// TestNewestCachedKernel: offline, Fetch falls back on the cache. Once the
// CVE tests have fetched an older kernel by release too, the cache holds
// several; the newest is the one linux-image-amd64 last depended on.
func TestNewestCachedKernel(t *testing.T) {
	cache := t.TempDir()
	for _, k := range []struct{ abi, version string }{
		{"6.1.0-47", "6.1.170-3"},
		{"6.1.0-57", "6.1.192-3"},
		{"6.1.0-9", "6.1.27-1"},
	} {
		root := filepath.Join(cache, "kernel", k.abi+"-amd64_"+k.version)
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		m := `{"abi":"` + k.abi + `","release":"` + k.abi + `-amd64","version":"` + k.version + `"}`
		if err := os.WriteFile(filepath.Join(root, markerName), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A tree without its marker is not complete, whatever its name.
	os.MkdirAll(filepath.Join(cache, "kernel", "6.1.0-99-amd64_6.1.999-1"), 0o755)

	k, ok := newestCachedKernel(cache)
	if !ok || k.Release != "6.1.0-57-amd64" || k.Version != "6.1.192-3" {
		t.Fatalf("newestCachedKernel = %+v, %v; want 6.1.0-57-amd64 (6.1.192-3)", k, ok)
	}
	if want := filepath.Join(cache, "kernel", "6.1.0-57-amd64_6.1.192-3"); k.Root != want {
		t.Errorf("root %s; want %s", k.Root, want)
	}
	if _, ok := newestCachedKernel(t.TempDir()); ok {
		t.Error("an empty cache gave a kernel")
	}
}
