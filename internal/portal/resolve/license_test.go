package resolve

import (
	"testing"

	"github.com/kcare/kcare/internal/portal/store"
)

func TestIPLicense(t *testing.T) {
	lics := []store.IPLicense{
		{CIDR: "198.51.100.0/24", Feed: "office"},
		{CIDR: "198.51.100.128/25", Feed: "lab"},
		{CIDR: "2001:db8::/32", Feed: "v6"},
		{CIDR: "0.0.0.0/0", Feed: "everyone"},
	}
	tests := []struct {
		name, ip, want string
	}{
		{"narrowest_wins", "198.51.100.200", "lab"},
		{"outside_narrow", "198.51.100.3", "office"},
		{"catch_all", "203.0.113.1", "everyone"},
		{"ipv6", "2001:db8::1", "v6"},
		{"ipv4_mapped", "::ffff:198.51.100.200", "lab"},
		{"not_an_address", "web1", ""},
		{"ipv6_outside", "2001:db9::1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if l := IPLicense(lics, tt.ip); l != nil {
				got = l.Feed
			}
			if got != tt.want {
				t.Errorf("IPLicense(%s) feed = %q, want %q", tt.ip, got, tt.want)
			}
			// The order of the licenses plays no part.
			rev := make([]store.IPLicense, len(lics))
			for i := range lics {
				rev[len(lics)-1-i] = lics[i]
			}
			again := ""
			if l := IPLicense(rev, tt.ip); l != nil {
				again = l.Feed
			}
			if again != got {
				t.Errorf("IPLicense(%s) over the licenses reversed = %q, want %q", tt.ip, again, got)
			}
		})
	}
}
