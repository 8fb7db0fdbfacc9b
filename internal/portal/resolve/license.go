package resolve

import (
	"net/netip"

	"github.com/kcare/kcare/internal/portal/store"
)

// IPLicense returns the IP license that covers a server at ip: of the
// licenses whose CIDR holds ip, the narrowest (the longest prefix). Two
// licenses holding one address with the same prefix length are the same
// CIDR, which the store keeps once, so the answer never depends on the
// order of lics or on when each was made. It returns nil when none holds
// ip or ip is not an address.
//
// This is the one place the rule lives: the index an IP-licensed server
// is served, the feed its row in the store records, and the metrics all
// take the feed of the license IPLicense returns.
func IPLicense(lics []store.IPLicense, ip string) *store.IPLicense {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil
	}
	a = a.Unmap()
	var best *store.IPLicense
	bits := -1
	for i := range lics {
		p, err := netip.ParsePrefix(lics[i].CIDR)
		if err != nil || !p.Contains(a) || p.Bits() <= bits {
			continue
		}
		best, bits = &lics[i], p.Bits()
	}
	return best
}
