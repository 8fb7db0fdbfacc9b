package analyze

import "testing"

// TestReleasePattern: every family's releases name their source series.
func TestReleasePattern(t *testing.T) {
	for _, tt := range []struct{ release, series string }{
		{"6.1.0-47-amd64", "6.1"},
		{"6.12.117+deb12-amd64", "6.12"},
		{"6.12.118+deb13-amd64", "6.12"},
		{"6.12.115+deb13.1-amd64", "6.12"},
		{"6.1.0-47", ""},
		{"linux-6.1", ""},
	} {
		m := releasePattern.FindStringSubmatch(tt.release)
		got := ""
		if m != nil {
			got = m[1]
		}
		if got != tt.series {
			t.Errorf("series of %q = %q; want %q", tt.release, got, tt.series)
		}
	}
}
