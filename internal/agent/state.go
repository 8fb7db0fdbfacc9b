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
