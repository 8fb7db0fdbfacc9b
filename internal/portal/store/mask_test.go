package store

import "testing"

func TestMaskKey(t *testing.T) {
	tests := []struct{ key, want string }{
		{"", ""},
		{"mon", "…"},
		{"k-web-01", "k-…"},
		{"0123456789abcdef0123456789abcdef", "0123…"},
		{"ключ-активации-1", "ключ…"},
		{"ключ-актив", "кл…"},
	}
	for _, tt := range tests {
		if got := MaskKey(tt.key); got != tt.want {
			t.Errorf("MaskKey(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}
