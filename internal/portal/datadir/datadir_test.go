package datadir

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestModes: what the package makes is DirMode/FileMode under a lax umask,
// an existing file opened with O_CREATE keeps its mode, and WriteFile
// replaces a file with a private one.
func TestModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	if err := MkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(root, "a"), dir} {
		if fi, _ := os.Stat(d); fi.Mode().Perm() != DirMode {
			t.Errorf("%s: %v, want %v", d, fi.Mode().Perm(), DirMode)
		}
	}
	f, err := OpenFile(filepath.Join(dir, "new"), os.O_RDWR|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	existing := filepath.Join(dir, "existing")
	os.WriteFile(existing, []byte("x"), 0o640)
	f, err = OpenFile(existing, os.O_RDWR|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	replaced := filepath.Join(dir, "replaced")
	os.WriteFile(replaced, []byte("old"), 0o644)
	if err := WriteFile(replaced, []byte("new")); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"new": FileMode, "existing": 0o640, "replaced": FileMode} {
		if fi, _ := os.Stat(filepath.Join(dir, name)); fi.Mode().Perm() != want {
			t.Errorf("%s: %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	if b, _ := os.ReadFile(replaced); string(b) != "new" {
		t.Errorf("replaced holds %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("%d entries in %s, want 3 (no temporary file left)", len(ents), dir)
	}
}
