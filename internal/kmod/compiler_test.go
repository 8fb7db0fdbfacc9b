package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestBannerCompiler(t *testing.T) {
	for _, tt := range []struct{ banner, want string }{
		{"Linux version 6.1.0-47-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) # SMP PREEMPT_DYNAMIC Debian 6.1.170-3 (2026-05-08)\n", "12.2.0"},
		{"Linux version 6.12.118+deb13-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0, GNU ld (GNU Binutils for Debian) 2.44) # SMP PREEMPT_DYNAMIC Debian 6.12.118-1 (2026-11-20)\n", "14.2.0"},
		{"Linux version 6.8.0 (builder@host) (Ubuntu clang version 18.1.3, Ubuntu LLD 18.1.3) #1 SMP\n", ""},
	} {
		got, ok := BannerCompiler(tt.banner)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("BannerCompiler(%q) = %q, %v; want %q", tt.banner, got, ok, tt.want)
		}
	}
}

// TestCheckCompiler reads the .comment of a real Debian module (built by
// GCC 12.2.0) and compares it with kernels built by 12.2.0 and 14.2.0.
func TestCheckCompiler(t *testing.T) {
	headers := os.Getenv("KCARE_TEST_HEADERS")
	if headers == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("KCARE_TEST_HEADERS is not set")
		}
		t.Skip("KCARE_TEST_HEADERS is not set")
	}
	// The image's binfmt_misc.ko, beside the headers in the extracted tree.
	root := filepath.Dir(filepath.Dir(filepath.Dir(headers)))
	release := os.Getenv("KCARE_TEST_RELEASE")
	ko, err := os.ReadFile(filepath.Join(root, "lib", "modules", release, "kernel", "fs", "binfmt_misc.ko"))
	if err != nil {
		t.Skipf("no uncompressed binfmt_misc.ko in the test kernel: %v", err)
	}
	got, err := Compilers(ko)
	if err != nil || len(got) != 1 || got[0] != "12.2.0" {
		t.Fatalf("Compilers = %q, %v; want [12.2.0]", got, err)
	}
	gcc12 := "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1\n"
	gcc14 := "Linux version 6.12.118+deb13-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0, GNU ld (GNU Binutils for Debian) 2.44) #1\n"
	if err := CheckCompiler(ko, gcc12); err != nil {
		t.Errorf("a GCC 12.2.0 module for a GCC 12.2.0 kernel: %v", err)
	}
	err = CheckCompiler(ko, gcc14)
	if !errors.Is(err, ErrWrongCompiler) || err.Error() != "module built with another compiler than the kernel: the module was compiled by GCC 12.2.0, the kernel by GCC 14.2.0" {
		t.Errorf("a GCC 12.2.0 module for a GCC 14.2.0 kernel: %v; want ErrWrongCompiler", err)
	}
}
