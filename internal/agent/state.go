package agent

import (
	"encoding/json"
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
	b, err := os.ReadFile(a.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read state %s: %w", a.statePath(), err)
	}
	return &s, nil
}

// writeState records s atomically; nil records that nothing is applied.
func (a *Agent) writeState(s *State) error {
	if s == nil {
		if err := os.Remove(a.statePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("clear state: %w", err)
		}
		return atomicfile.SyncDir(a.stateDir())
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(a.statePath(), append(b, '\n'), 0o644)
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
func (a *Agent) cacheBundle(m *bundle.Manifest, data, sig []byte) (string, error) {
	rel := filepath.Join(m.Kernel.BuildID, fmt.Sprintf("level-%d.kcp", m.Level))
	full := filepath.Join(a.cacheDir(), rel)
	if err := writeAtomic(full, data, 0o644); err != nil {
		return "", fmt.Errorf("cache bundle: %w", err)
	}
	faultpoint.Hit(faultpoint.CacheWrite)
	if err := writeAtomic(full+".sig", sig, 0o644); err != nil {
		return "", fmt.Errorf("cache bundle signature: %w", err)
	}
	return rel, nil
}
