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

func TestParseDependsKbuild(t *testing.T) {
	out := "linux-headers-6.1.0-56-amd64\n  Depends: linux-headers-6.1.0-56-common\n  Depends: linux-kbuild-6.1\n  Depends: linux-compiler-gcc-12-x86\n"
	got := parseDepends([]byte(out))
	want := []string{"linux-headers-6.1.0-56-common", "linux-kbuild-6.1", "linux-compiler-gcc-12-x86"}
	if !slices.Equal(got, want) {
		t.Errorf("parseDepends = %q; want %q", got, want)
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want string
		ok   bool
	}{
		{"kbuild", "Package: linux-kbuild-6.1\nSource: linux\nVersion: 6.1.192-2\nInstalled-Size: 2397\n", "6.1.192-2", true},
		{"epoch", "Package: foo\nVersion: 1:2.3-4\n", "1:2.3-4", true},
		{"none", "Package: foo\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseVersion([]byte(tt.out))
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseVersion = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
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
