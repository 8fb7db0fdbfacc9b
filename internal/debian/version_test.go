package debian

import "testing"

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.170-3", "6.1.170-3", 0},
		{"6.1.170-3", "6.1.192-1", -1},
		{"6.1.192-3", "6.1.192-1", 1},
		{"6.1.176-1", "6.1.170-3", 1},
		{"6.1.99-1", "6.1.170-3", -1},
		{"6.12.117-1~deb12u1", "6.12.117-1", -1},
		{"6.12.95-1~bpo12+1", "6.12.107-1~deb12u1", -1},
		{"6.12.115-2", "6.12.115-1", 1},
		{"1:2.0-1", "3.0-1", 1},
		{"1.0~rc1-1", "1.0-1", -1},
		{"1.0a-1", "1.0-1", 1},
		{"1.0+b1", "1.0", 1},
		{"1.0-1+deb12u1", "1.0-1", 1},
		{"010", "10", 0},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d; want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d; want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}
