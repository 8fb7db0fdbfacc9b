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
	"github.com/kcare/kcare/internal/trust"
)

// Portal is where Update fetches from (portalclient.Client).
type Portal interface {
	// Server returns the registered server id requests authenticate as,
	// "" for a server known by its IP license: a rollback order in the
	// index must name it.
	Server() string
	// IndexFor fetches the signed index that answers r, unparsed.
	IndexFor(ctx context.Context, r index.Request) (body, sig []byte, err error)
	Download(ctx context.Context, path string, size int64, progress func(done, total int64)) ([]byte, error)
}

// UpdateOptions tune one update.
type UpdateOptions struct {
	Prefix string // PREFIX: "", test, 12h, 24h, 48h
	Sticky string // STICKY_PATCH
	// Delay and Patchset are KernelCare's UPDATE_DELAY ("24h", "2d") and
	// STICKY_PATCHSET: the portal holds back levels released within the
	// delay and those of patchsets newer than the one named.
	Delay, Patchset string
	Progress        func(done, total int64)
	// Scheduled: the update runs by itself (kcarectl --auto-update, the
	// timer), not by an operator's hand, and so waits for the server's
	// maintenance window when the index names one.
	Scheduled bool
}

// request is the index request o makes for the kernel buildID.
func (o UpdateOptions) request(buildID string) index.Request {
	return index.Request{BuildID: buildID, Prefix: o.Prefix, Sticky: o.Sticky, Delay: o.Delay, Patchset: o.Patchset}
}

// indexState is /var/lib/kcare/index.json: the last index accepted.
type indexState struct {
	Version int64     `json:"version"`
	Issued  time.Time `json:"issued"`
	Level   int       `json:"level"`
	Latest  int       `json:"latest"`
	// ETag names the answer a poll accepted (Poll), for its next
	// conditional request; "" after a full run.
	ETag string `json:"etag,omitempty"`
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
	body, sig, err := p.IndexFor(ctx, o.request(id.BuildID))
	if err != nil {
		return nil, id, fmt.Errorf("fetch index: %w", err)
	}
	idx, err := a.acceptIndex(body, sig, id, keys, o, p.Server(), "")
	return idx, id, err
}

// acceptIndex verifies an index in the fixed order of index.Verifier
// and records its version as the last accepted, with tag, the entity tag
// it came with (for a poll).
func (a *Agent) acceptIndex(body, sig []byte, id kernel.Identity, keys *trust.Keyring, o UpdateOptions, server, tag string) (*index.Index, error) {
	last, err := a.readIndexState()
	if err != nil {
		return nil, err
	}
	v := index.Verifier{Keys: keys, BuildID: id.BuildID, Prefix: o.Prefix, Sticky: o.Sticky, Delay: o.Delay, Patchset: o.Patchset, ServerID: server,
		LastVersion: last.Version, Now: a.Now}
	idx, err := v.Verify(body, sig)
	if err != nil {
		return nil, fmt.Errorf("verify index: %w", err)
	}
	st := indexState{Version: idx.Version, Issued: idx.Issued, Latest: idx.Latest, ETag: tag}
	if idx.Level != nil {
		st.Level = idx.Level.Level
	}
	if err := a.writeIndexState(st); err != nil {
		return nil, fmt.Errorf("record index version: %w", err)
	}
	return idx, nil
}

// Update fetches the index from the portal and applies the level it
// names, if it is not the one in effect: resolve -> fetch -> verify ->
// apply. A scheduled update outside the maintenance window the index
// names applies nothing (ErrNothingToDo, saying when the window is). Nothing touches the kernel until the index, the download's size
// and digest, and the bundle have passed every check. A level below the
// one in effect is applied only as mayLower allows; else the error wraps
// ErrDowngrade.
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
			return nil, unknownKernel{fmt.Errorf("no patches for kernel %s (build-id %s): %w", id.Release, id.BuildID, ErrNothingToDo)}
		}
		return nil, fmt.Errorf("no patch level allowed yet for kernel %s (newest published: %d): %w", id.Release, idx.Latest, ErrNothingToDo)
	}
	info, err := a.Info()
	if err != nil {
		return nil, err
	}
	st, _ := a.readState() // unreadable: as if nothing recorded
	if info.State == "applied" && l.Level < info.Level {
		if err := a.mayLower(idx, info.Level, o, st); err != nil {
			return nil, err
		}
		if idx.Rollback != nil {
			a.keepOrder(st, idx.Rollback)
		}
	}
	if info.State == "applied" && info.Level == l.Level && st != nil && st.Digest == l.Digest {
		err := a.checkCached(id)
		if err == nil {
			return &Result{Manifest: st.Manifest}, fmt.Errorf("level %d is already applied: %w", l.Level, ErrNothingToDo)
		}
		// The boot-time re-apply needs it: fetch it again.
		a.logf("level %d is applied, but its cached bundle is not usable (%v); fetching it again", l.Level, err)
	}
	if w := idx.Window; o.Scheduled && w != nil && !w.Open(a.now()) {
		return nil, fmt.Errorf("level %d waits for the maintenance window, %s to %s (kcarectl --update applies it now): %w",
			l.Level, w.Start.UTC().Format(time.RFC3339), w.End.UTC().Format(time.RFC3339), ErrNothingToDo)
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
	req := o.request(id.BuildID)
	return a.apply(ctx, data, []byte(l.Signature), &req)
}

// mayLower decides whether a verified index may take the kernel from level
// cur, in effect, down to its level: only when the index carries the
// portal's rollback order for this server (the verifier has checked that
// it names this server) from level cur, or when this host's own settings
// asked for it (hostAsked). Else it returns an error wrapping
// ErrDowngrade (and ErrStaleOrder for an order from another level), and
// nothing is fetched or applied.
func (a *Agent) mayLower(idx *index.Index, cur int, o UpdateOptions, st *State) error {
	to := idx.Level.Level
	switch r := idx.Rollback; {
	case r != nil && r.Level == to && r.From == cur:
		why := ""
		if r.Reason != "" {
			why = ": " + r.Reason
		}
		a.logf("the portal orders a rollback from level %d to level %d%s", cur, to, why)
		return nil
	case r != nil && !hostAsked(o, st):
		return fmt.Errorf("%w: %w: the index orders level %d back to level %d, but level %d is in effect; "+
			"an order given for another state is not carried out (level %d stays)", ErrDowngrade, ErrStaleOrder, r.From, r.Level, cur, cur)
	case hostAsked(o, st):
		a.logf("going down from level %d to level %d, as this host's PREFIX or STICKY_PATCH asks", cur, to)
		return nil
	}
	return fmt.Errorf("%w: the index offers level %d, below level %d in effect, and carries no rollback order for this server; "+
		"level %d stays (kcarectl --unload or --apply to change it by hand)", ErrDowngrade, to, cur, cur)
}

// hostAsked reports whether this host's own settings, which no one on the
// network can change, ask for the lower level: the PREFIX or STICKY_PATCH
// it sends differ from those the level in effect was fetched with; or, for
// a level not fetched by Update (applied by hand, or recorded by an older
// agent), it sends a PREFIX or a sticky date of its own. STICKY_PATCH=KEY
// is not a date of its own: the key's date is the portal's to move, and
// the portal orders a rollback when it moves back.
func hostAsked(o UpdateOptions, st *State) bool {
	if st != nil && st.Request != nil {
		return o.Prefix != st.Request.Prefix || o.Sticky != st.Request.Sticky ||
			o.Delay != st.Request.Delay || o.Patchset != st.Request.Patchset
	}
	return o.Prefix != "" || (o.Sticky != "" && o.Sticky != "KEY") || o.Delay != "" || o.Patchset != ""
}

// keepOrder records a rollback order with the level it is from, before
// anything is fetched: should the machine reboot before the order is
// carried out, the boot does not re-apply that level (UpdateLocal). A
// failure to record it is a warning: the order is carried out now.
func (a *Agent) keepOrder(st *State, r *index.Rollback) {
	if st == nil || st.Manifest.Level != r.From {
		return
	}
	o := *r
	st.Rollback = &o
	if err := a.writeState(st); err != nil {
		a.logf("warning: record the rollback order from level %d: %v", r.From, err)
	}
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

// unknownKernel is a nothing-to-do that is also ErrUnknownKernel.
type unknownKernel struct{ err error }

func (e unknownKernel) Error() string        { return e.err.Error() }
func (e unknownKernel) Unwrap() error        { return e.err }
func (e unknownKernel) Is(target error) bool { return target == ErrUnknownKernel }
