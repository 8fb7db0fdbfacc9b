package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/faultpoint"
	"github.com/kcare/kcare/internal/index"
)

// State is what /var/lib/kcare/state.json records: the level last applied
// to this kernel and where its bundle is cached.
type State struct {
	Manifest bundle.Manifest `json:"manifest"`
	Applied  time.Time       `json:"applied"`
	Digest   string          `json:"bundle_sha256"`
	Bundle   string          `json:"bundle"` // cached bundle, relative to the cache dir
	Signer   string          `json:"signer"` // fingerprint of the publisher key
	// Request is the index request the level was fetched with; nil for
	// a level applied by hand (--apply) or recorded by an older agent.
	Request *index.Request `json:"request,omitempty"`
	// Unhealthy says what the kernel logged as the level was applied
	// (new warnings, oopses, taint flags); "" when it took it cleanly.
	// An unhealthy level is not re-applied at boot (UpdateLocal).
	Unhealthy string `json:"unhealthy,omitempty"`
	// Rollback is the portal's order to go back from this level, as a
	// verified index carried it, recorded as soon as it was learned: a
	// level under an order is not re-applied at boot.
	Rollback *index.Rollback `json:"rollback,omitempty"`
	// Previous is the last level below this one that was in effect, was
	// healthy when applied, and had no order against it: what the boot
	// goes back to instead of an unhealthy or ordered level. nil: none.
	Previous *CachedLevel `json:"previous,omitempty"`
}

// CachedLevel names a cached bundle of a level.
type CachedLevel struct {
	Level  int    `json:"level"`
	Bundle string `json:"bundle"` // relative to the cache dir
	Digest string `json:"bundle_sha256"`
}

// good reports whether the level st records may be gone back to: healthy
// when applied, and with no order against it.
func (st *State) good() bool { return st.Unhealthy == "" && st.Rollback == nil }

// previousFor returns what a record of level, replacing the record old,
// names as its Previous: old's level when good and below level, else
// old's own Previous when below level.
func previousFor(old *State, level int) *CachedLevel {
	if old == nil {
		return nil
	}
	if old.good() && old.Manifest.Level < level && old.Bundle != "" {
		return &CachedLevel{Level: old.Manifest.Level, Bundle: old.Bundle, Digest: old.Digest}
	}
	if p := old.Previous; p != nil && p.Level < level {
		return p
	}
	return nil
}

func (a *Agent) stateDir() string { return filepath.Join(a.root(), "var/lib/kcare") }
func (a *Agent) cacheDir() string { return filepath.Join(a.root(), "var/cache/kcare") }
func (a *Agent) statePath() string {
	return filepath.Join(a.stateDir(), "state.json")
}

// readState returns the recorded state, or nil when nothing is recorded.
func (a *Agent) readState() (*State, error) {
	return readStateFile(a.statePath())
}

// writeState records s atomically; nil records that nothing is applied.
func (a *Agent) writeState(s *State) error {
	if s == nil {
		if err := os.Remove(a.statePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("clear state: %w", err)
		}
		return atomicfile.SyncDir(a.stateDir())
	}
	b, err := marshalState(s)
	if err != nil {
		return err
	}
	return writeAtomic(a.statePath(), b, 0o644)
}

// writeAtomic writes data to path atomically, making its directory if
// needed; see atomicfile.WriteFile.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, perm)
}

// cacheBundle keeps a verified bundle and its signature for offline
// re-application; it returns the bundle's path relative to the cache dir.
// A bundle already cached with the same bytes is not written again, so
// that the boot-time re-apply needs no space. The file a record names is
// never overwritten with other bytes: another bundle of that level goes
// beside it under a name with its digest.
// digest is data's sha256, which the caller has computed (bundle.Digest).
func (a *Agent) cacheBundle(m *bundle.Manifest, data, sig []byte, digest string) (string, error) {
	rel := filepath.Join(m.Kernel.BuildID, fmt.Sprintf("level-%d.kcp", m.Level))
	if old, _ := a.readState(); old != nil && old.Bundle == rel && old.Digest != digest {
		rel = filepath.Join(m.Kernel.BuildID, fmt.Sprintf("level-%d-%s.kcp", m.Level, digest[:12]))
	}
	full := filepath.Join(a.cacheDir(), rel)
	if a.cached(full, data, sig) {
		return rel, nil
	}
	if err := writeAtomic(full, data, 0o644); err != nil {
		return "", fmt.Errorf("cache bundle: %w", err)
	}
	faultpoint.Hit(faultpoint.CacheWrite)
	if err := writeAtomic(full+".sig", sig, 0o644); err != nil {
		return "", fmt.Errorf("cache bundle signature: %w", err)
	}
	return rel, nil
}

// cached reports whether the bundle data and its signature sig are
// already at path: the same bytes, compared as they are (a digest of the
// file would cost a pass of sha256 over it for the same answer).
func (a *Agent) cached(path string, data, sig []byte) bool {
	old, err := readLimited(path, bundle.MaxBundleSize)
	if err != nil || !bytes.Equal(old, data) {
		return false
	}
	oldSig, err := readLimited(path+".sig", bundle.MaxSignatureSize)
	return err == nil && bytes.Equal(oldSig, sig)
}
