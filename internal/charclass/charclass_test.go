package charclass

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestMatchesRegexp: each class matches exactly what the regular
// expression it replaces matches, over strings around its bounds, of its
// characters and of others, ASCII, UTF-8 and not.
func TestMatchesRegexp(t *testing.T) {
	tests := []struct {
		spec     string
		min, max int
	}{
		{"A-Za-z0-9._-", 1, 253},
		{"0-9a-f", 16, 128},
		{"0-9a-f", 40, 40},
		{"A-Za-z0-9._+~-", 1, 64},
		{"a-z0-9_", 1, 50},
		{"A-Za-z0-9.+~:_^-", 0, 99},
		{"^\n\r\x00\"'\\\\", 0, 500},
		{"A-Za-z0-9_.-", 0, 31},
	}
	pieces := []string{"a", "Z", "0", "f", "g", "-", ".", "_", "+", "^", ":", "~", " ", "\n", "\x00", "\"", "\\", "é", "日", "\xff"}
	for _, tt := range tests {
		re := regexp.MustCompile("^[" + tt.spec + "]{" + fmt.Sprint(tt.min) + "," + fmt.Sprint(tt.max) + "}$")
		c := New(tt.spec, tt.min, tt.max)
		for _, p := range pieces {
			for _, n := range []int{0, 1, tt.min - 1, tt.min, tt.max - 1, tt.max, tt.max + 1} {
				if n < 0 {
					continue
				}
				for _, s := range []string{strings.Repeat(p, n), "a" + strings.Repeat(p, n), strings.Repeat("0", max(n-1, 0)) + p} {
					if got, want := c.MatchString(s), re.MatchString(s); got != want {
						t.Errorf("New(%q, %d, %d).MatchString(%q) = %v, %s says %v", tt.spec, tt.min, tt.max, s, got, re, want)
					}
				}
			}
		}
	}
}

func TestNewPanics(t *testing.T) {
	for _, spec := range []string{"z-a", "é", "a-é"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%q) did not panic", spec)
				}
			}()
			New(spec, 0, 1)
		}()
	}
}

// TestHeadedMatchesRegexp: a head character then a class, as the
// regular expression it replaces.
func TestHeadedMatchesRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[0-9][A-Za-z0-9.+~:_^-]{0,99}$`)
	h := New("0-9", 1, 1).Then(New("A-Za-z0-9.+~:_^-", 0, 99))
	for _, s := range []string{"", "1", "a", "1a", "1.2.3-4+deb12u1", "01" + strings.Repeat("x", 98), "0" + strings.Repeat("x", 100),
		"é1", "1é", "\xff", " 1", "1 "} {
		if got, want := h.MatchString(s), re.MatchString(s); got != want {
			t.Errorf("MatchString(%q) = %v, the regexp says %v", s, got, want)
		}
	}
}
