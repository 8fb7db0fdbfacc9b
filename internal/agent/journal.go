package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/index"
)

// The journal of an operation under way, beside state.json. A kcarectl
// killed part-way, or a machine that lost power, leaves one of them, and
// the next kcarectl finishes or undoes what it says (Recover).
const (
	// PendingFile is the record of a level about to be applied: the
	// state.json it becomes, written and synced before the kernel is
	// touched, renamed over state.json once the level is in effect.
	PendingFile = "pending.json"
	// UnloadingFile marks an unload under way: made before the first
	// patch is disabled, removed once the record says nothing is applied.
	UnloadingFile = "unloading"
)

func (a *Agent) pendingPath() string   { return filepath.Join(a.stateDir(), PendingFile) }
func (a *Agent) unloadingPath() string { return filepath.Join(a.stateDir(), UnloadingFile) }

// readPending returns the level an interrupted apply was applying, or nil.
func (a *Agent) readPending() (*State, error) {
	return readStateFile(a.pendingPath())
}

// readStateFile reads a State from path; nil when there is no file.
func readStateFile(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err := s.Manifest.Validate(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return &s, nil
}

// change is the record of a level, written before the kernel is touched
// so that once the level is in effect only renames are left to do, which
// need no space: a full disk fails an apply before it loads anything.
type change struct {
	a  *Agent
	st *State
	// journal says PendingFile holds st; when the record already names
	// the same bundle (the boot-time re-apply) none is written.
	journal bool
	staged  []*atomicfile.File // the effective identity and CVE list, synced, not in place
}

// prepare caches the bundle and writes the record of the level it holds,
// not yet in place.
func (a *Agent) prepare(b *bundle.Bundle, data, sig []byte, req *index.Request) (*change, error) {
	digest := bundle.Digest(data) // once: a pass of sha256 over the bundle
	rel, err := a.cacheBundle(&b.Manifest, data, sig, digest)
	if err != nil {
		return nil, err
	}
	st := &State{
		Manifest: b.Manifest,
		Applied:  a.now().UTC().Truncate(time.Second),
		Digest:   digest,
		Bundle:   rel,
		Signer:   b.Signer.Fingerprint,
		Request:  req,
	}
	old, _ := a.readState()
	same := old != nil && old.Digest == st.Digest && old.Bundle == st.Bundle
	if same {
		if a.sysfs().Exists(old.Manifest.Module.Name) {
			st.Applied = old.Applied
		}
		if st.Request == nil {
			st.Request = old.Request
		}
		st.Unhealthy, st.Rollback, st.Previous = old.Unhealthy, old.Rollback, old.Previous
	} else {
		st.Previous = previousFor(old, st.Manifest.Level)
	}
	c := &change{a: a, st: st}
	if !same {
		data, err := marshalState(st)
		if err != nil {
			return nil, err
		}
		if err := writeAtomic(a.pendingPath(), data, 0o644); err != nil {
			return nil, fmt.Errorf("record the level to apply: %w", err)
		}
		c.journal = true
	}
	if c.staged, err = a.stageEffective(&b.Manifest); err != nil {
		c.abort()
		return nil, err
	}
	return c, nil
}

// commit puts the record in place: the level is in effect.
func (c *change) commit() error {
	a := c.a
	if c.journal {
		if c.st.Unhealthy != "" {
			// What the kernel logged as the level was applied, beside
			// the record prepare wrote: in the record, then in place.
			data, err := marshalState(c.st)
			if err == nil {
				err = writeAtomic(a.pendingPath(), data, 0o644)
			}
			if err != nil {
				a.logf("warning: level %d is applied, but not recorded as unhealthy: %v", c.st.Manifest.Level, err)
			}
		}
		if err := os.Rename(a.pendingPath(), a.statePath()); err != nil {
			return fmt.Errorf("record state: %w", err)
		}
		if err := atomicfile.SyncDir(a.stateDir()); err != nil {
			return fmt.Errorf("record state: %w", err)
		}
	} else if data, err := marshalState(c.st); err == nil {
		// The record already names this bundle; only the time it was
		// applied may be new, and a failure to say so loses nothing else.
		if old, _ := os.ReadFile(a.statePath()); !bytes.Equal(old, data) {
			if err := writeAtomic(a.statePath(), data, 0o644); err != nil {
				a.logf("warning: level %d is applied and recorded, but not its new apply time: %v", c.st.Manifest.Level, err)
			}
		}
	}
	return commitStaged(c.staged)
}

// commitStaged puts staged files in place.
func commitStaged(staged []*atomicfile.File) error {
	var errs []error
	for _, f := range staged {
		if err := f.Commit(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("record effective version: %w", err)
	}
	return nil
}

// abort removes what prepare wrote but the cached bundle: the level was
// not applied.
func (c *change) abort() {
	if c.journal {
		os.Remove(c.a.pendingPath())
		atomicfile.SyncDir(c.a.stateDir())
	}
	for _, f := range c.staged {
		f.Close()
	}
}

func marshalState(s *State) ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// stageEffective prepares the effective identity and CVE list of level m
// where they differ from what is on disk.
func (a *Agent) stageEffective(m *bundle.Manifest) ([]*atomicfile.File, error) {
	e := a.effective(m)
	if err := e.Check(); err != nil {
		return nil, err
	}
	var cves bytes.Buffer
	for _, c := range m.CVEs {
		fmt.Fprintln(&cves, c.ID)
	}
	var staged []*atomicfile.File
	abort := func() {
		for _, f := range staged {
			f.Close()
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{CVEListFile, cves.Bytes()}, {EffectiveFile, e.Marshal()}} {
		path := filepath.Join(a.stateDir(), f.name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err := os.MkdirAll(a.stateDir(), 0o755); err != nil {
			return nil, err
		}
		af, err := atomicfile.Create(path, 0o644)
		if err == nil {
			staged = append(staged, af)
			if _, err = af.Write(f.data); err == nil {
				err = af.Sync()
			}
		}
		if err != nil {
			abort()
			return nil, fmt.Errorf("record %s: %w", f.name, err)
		}
	}
	return staged, nil
}
