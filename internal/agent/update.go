package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/kernel"
)

// Portal is where Update fetches from (portalclient.Client).
type Portal interface {
	Index(ctx context.Context, buildID, prefix, sticky string) (body, sig []byte, err error)
	Download(ctx context.Context, path string, size int64, progress func(done, total int64)) ([]byte, error)
}

// UpdateOptions tune one update.
type UpdateOptions struct {
	Prefix   string // PREFIX: "", test, 12h, 24h, 48h
	Sticky   string // STICKY_PATCH
	Progress func(done, total int64)
}

// indexState is /var/lib/kcare/index.json: the last index accepted.
type indexState struct {
	Version int64     `json:"version"`
	Issued  time.Time `json:"issued"`
	Level   int       `json:"level"`
	Latest  int       `json:"latest"`
}

func (a *Agent) indexStatePath() string { return filepath.Join(a.stateDir(), "index.json") }

func (a *Agent) readIndexState() (indexState, error) {
	var s indexState
	b, err := os.ReadFile(a.indexStatePath())
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read index state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read index state %s: %w", a.indexStatePath(), err)
	}
	return s, nil
}

func (a *Agent) writeIndexState(s indexState) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return writeAtomic(a.indexStatePath(), append(b, '\n'), 0o644)
}

// FetchIndex fetches and verifies this kernel's index, in the fixed order
// of index.Verifier, and records its version as the last accepted.
func (a *Agent) FetchIndex(ctx context.Context, p Portal, o UpdateOptions) (*index.Index, kernel.Identity, error) {
	id, err := kernel.Read(a.root())
	if err != nil {
		return nil, id, err
	}
	keys, err := a.keyring()
	if err != nil {
		return nil, id, err
	}
	body, sig, err := p.Index(ctx, id.BuildID, o.Prefix, o.Sticky)
	if err != nil {
		return nil, id, fmt.Errorf("fetch index: %w", err)
	}
	last, err := a.readIndexState()
	if err != nil {
		return nil, id, err
	}
	v := index.Verifier{Keys: keys, BuildID: id.BuildID, LastVersion: last.Version, Now: a.Now}
	idx, err := v.Verify(body, sig)
	if err != nil {
		return nil, id, fmt.Errorf("verify index: %w", err)
	}
	st := indexState{Version: idx.Version, Issued: idx.Issued, Latest: idx.Latest}
	if idx.Level != nil {
		st.Level = idx.Level.Level
	}
	if err := a.writeIndexState(st); err != nil {
		return nil, id, fmt.Errorf("record index version: %w", err)
	}
	return idx, id, nil
}

// Update fetches the index from the portal and applies the level it
// names, if it is not the one in effect: resolve -> fetch -> verify ->
// apply. Nothing touches the kernel until the index, the download's size
// and digest, and the bundle have passed every check.
func (a *Agent) Update(ctx context.Context, p Portal, o UpdateOptions) (*Result, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	idx, id, err := a.FetchIndex(ctx, p, o)
	if err != nil {
		return nil, err
	}
	l := idx.Level
	if l == nil {
		if idx.Latest == 0 {
			return nil, fmt.Errorf("no patches for kernel %s (build-id %s): %w", id.Release, id.BuildID, ErrNothingToDo)
		}
		return nil, fmt.Errorf("no patch level allowed yet for kernel %s (newest published: %d): %w", id.Release, idx.Latest, ErrNothingToDo)
	}
	if info, err := a.Info(); err == nil && info.State == "applied" && info.Level == l.Level {
		if st, _ := a.readState(); st != nil && st.Digest == l.Digest {
			return &Result{Manifest: st.Manifest}, fmt.Errorf("level %d is already applied: %w", l.Level, ErrNothingToDo)
		}
	}
	a.logf("downloading level %d (%d bytes)", l.Level, l.Size)
	data, err := p.Download(ctx, l.URL, l.Size, o.Progress)
	if err != nil {
		if errors.Is(err, index.ErrTooLarge) {
			return nil, fmt.Errorf("%w: bundle larger than the %d bytes the index announced", bundle.ErrTooLarge, l.Size)
		}
		return nil, err
	}
	if int64(len(data)) != l.Size {
		return nil, fmt.Errorf("%w: downloaded %d bytes, the index announced %d", bundle.ErrDigestMismatch, len(data), l.Size)
	}
	if d := bundle.Digest(data); d != l.Digest {
		return nil, fmt.Errorf("%w: downloaded bundle has sha256 %s, the index announced %s", bundle.ErrDigestMismatch, d, l.Digest)
	}
	return a.apply(ctx, data, []byte(l.Signature))
}

// Status is what the portal's index says beside the kernel's state, for
// kcarectl --check and --status.
type Status struct {
	Applied   int // level in effect, 0 if none
	Available int // the newest level this server may have, 0 if none
	Latest    int // the newest level published for the kernel
}

// CheckStatus fetches and verifies the index without applying anything.
func (a *Agent) CheckStatus(ctx context.Context, p Portal, o UpdateOptions) (*Status, error) {
	idx, _, err := a.FetchIndex(ctx, p, o)
	if err != nil {
		return nil, err
	}
	st := &Status{Latest: idx.Latest}
	if idx.Level != nil {
		st.Available = idx.Level.Level
	}
	info, err := a.Info()
	if err != nil {
		return nil, err
	}
	if info.State == "unsupported" {
		return nil, ErrNoLivepatch
	}
	st.Applied = info.Level
	return st, nil
}
