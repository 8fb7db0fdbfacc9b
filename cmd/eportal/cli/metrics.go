package cli

import (
	"net/netip"
	"strings"

	"github.com/kcare/kcare/internal/secretflag"
)

// metricsToken reads the bearer token /metrics requires from path, one
// line. The token is never taken from the command line, where every local
// user could read it.
func metricsToken(path string) (string, error) {
	return secretflag.ReadFile(path, "--metrics-token-file")
}

// metricsAllow parses --metrics-allow values: CIDRs, or single addresses.
func metricsAllow(vals []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if p, err := netip.ParsePrefix(f); err == nil {
				out = append(out, p.Masked())
			} else if a, err := netip.ParseAddr(f); err == nil {
				out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			} else {
				return nil, usageErr("--metrics-allow %q: not a CIDR or an address", f)
			}
		}
	}
	return out, nil
}
