package debkernel

import (
	"slices"
	"testing"
)

func TestParseImageDepends(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want string
		ok   bool
	}{
		{"bookworm", "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", "6.1.0-56-amd64", true},
		{"unsigned", "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64-unsigned\n", "6.1.0-56-amd64", true},
		{"alternatives", "linux-image-amd64\n |Depends: linux-image-6.12.38+deb13-amd64\n  Depends: <linux-image-6.12.38+deb13-amd64-unsigned>\n", "6.12.38+deb13-amd64", true},
		{"other_depends_first", "linux-image-amd64\n  Depends: firmware-linux-free\n  Depends: linux-image-6.1.0-56-amd64\n", "6.1.0-56-amd64", true},
		{"empty", "", "", false},
		{"no_image", "linux-image-amd64\n  Recommends: firmware-linux-free\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseImageDepends([]byte(tt.out))
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseImageDepends = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseShow(t *testing.T) {
	out := `Package: linux-image-6.1.0-56-amd64-unsigned
Source: linux
Version: 6.1.192-2
Installed-Size: 406613
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Description: Linux 6.1 for 64-bit PCs
 The Linux kernel 6.1 and modules for use on PCs with AMD64, Intel 64 or
 VIA Nano processors.
Description-md5: 0aa9928538ff7ff0f28e8072ac8b130d

Package: linux-headers-6.1.0-56-amd64
Source: linux
Version: 6.1.192-2
Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86
Description: Header files for Linux 6.1.0-56-amd64

Package: linux-headers-6.1.0-56-amd64
Version: 6.1.190-1
`
	got := parseShow([]byte(out))
	want := map[string]pkgInfo{
		"linux-image-6.1.0-56-amd64-unsigned": {"6.1.192-2", []string{"kmod", "linux-base", "initramfs-tools"}},
		"linux-headers-6.1.0-56-amd64":        {"6.1.192-2", []string{"linux-headers-6.1.0-56-common", "linux-kbuild-6.1", "linux-compiler-gcc-12-x86"}},
	}
	if len(got) != len(want) {
		t.Errorf("parseShow found %d packages; want %d", len(got), len(want))
	}
	for pkg, w := range want {
		g := got[pkg]
		if g.Version != w.Version || !slices.Equal(g.Depends, w.Depends) {
			t.Errorf("parseShow %s = %+v; want %+v", pkg, g, w)
		}
	}
}

func TestDebFileName(t *testing.T) {
	if got, want := debFileName("linux-kbuild-6.1", "6.1.192-2", "amd64"), "linux-kbuild-6.1_6.1.192-2_amd64.deb"; got != want {
		t.Errorf("debFileName = %q; want %q", got, want)
	}
	if got, want := debFileName("foo", "1:2.3-4", "all"), "foo_1%3a2.3-4_all.deb"; got != want {
		t.Errorf("debFileName = %q; want %q", got, want)
	}
}
