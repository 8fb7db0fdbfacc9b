package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/kcare/kcare/internal/portal/datadir"
	"github.com/kcare/kcare/internal/secretflag"
)

// metricsSaltFile holds the salt of the hash that names activation keys in
// /metrics (DATA/metrics.salt, made at first start). Replicas sharing one
// database share it, as they share portal.key.
const metricsSaltFile = "metrics.salt"

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

// metricsSalt reads DATA/metrics.salt, making it on first start.
func metricsSalt(data string) ([]byte, error) {
	path := filepath.Join(data, metricsSaltFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		salt := make([]byte, 32)
		rand.Read(salt)
		b = []byte(hex.EncodeToString(salt) + "\n")
		if err := datadir.WriteFile(path, b); err != nil {
			return nil, fmt.Errorf("metrics salt: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("metrics salt: %w", err)
	}
	salt, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(salt) < 16 {
		return nil, fmt.Errorf("metrics salt %s: want at least 32 hex digits", path)
	}
	return salt, nil
}
