package kbuild

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindHeaders(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "usr/src")
	arch := filepath.Join(src, "linux-headers-6.1.0-56-amd64")
	common := filepath.Join(src, "linux-headers-6.1.0-56-common")
	for _, d := range []string{arch, common} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(arch, "Makefile"), []byte("include /usr/src/linux-headers-6.1.0-56-common/Makefile\n"), 0o644)
	os.WriteFile(filepath.Join(common, "Makefile"), []byte("# top\n"), 0o644)
	for _, in := range []string{arch, root} {
		h, err := FindHeaders(in)
		if err != nil {
			t.Fatalf("FindHeaders(%s): %v", in, err)
		}
		if h.Dir != arch || h.Common != common {
			t.Errorf("FindHeaders(%s) = %+v, want %s and %s", in, h, arch, common)
		}
	}
	if _, err := FindHeaders(t.TempDir()); err == nil {
		t.Error("FindHeaders(empty dir) succeeded, want error")
	}
}
