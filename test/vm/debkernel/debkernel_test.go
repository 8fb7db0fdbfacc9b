package debkernel

import (
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
