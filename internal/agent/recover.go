package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/kmod"
)

// Recover brings the kernel and the record into agreement after a
// kcarectl that stopped part-way: killed, or the machine lost power. It
// takes the lock without waiting (ErrLocked when another kcarectl holds
// it: that one is not stopped, and records what it does) and does what
// recover describes. Every kcarectl that changes the kernel recovers
// first, under its lock; kcarectl --info calls Recover.
func (a *Agent) Recover(ctx context.Context) error {
	unlock, err := a.tryLock()
	if err != nil {
		return err
	}
	defer unlock()
	return a.recover(ctx)
}

// recover, with the lock held:
//
//   - removes the temporary files of writes cut short in the state and
//     cache directories;
//   - sets aside a state.json, pending.json or index.json that cannot be
//     read, as NAME.corrupt, and says so;
//   - finishes an unload that was under way (UnloadingFile);
//   - waits for a transition a stopped kcarectl left in progress, up to
//     TRANSITION_TIMEOUT, and reverses it when it stalls, as that
//     kcarectl would have;
//   - records the level an interrupted apply was applying (PendingFile)
//     if the kernel has it in effect, and forgets it if not;
//   - records the level the kernel has in effect when the record names
//     another and a verified cached bundle holds it (a lost or corrupt
//     record);
//   - removes kcare modules loaded without their patch: a replaced or a
//     disabled level whose module a stopped kcarectl did not remove.
//
// What it did goes to the log, one line each. After a reboot the kernel
// has nothing in effect and the record names the cached level: that is
// agreement, which the boot-time re-apply acts on.
func (a *Agent) recover(ctx context.Context) error {
	var errs []error
	a.removeTemps()
	a.setAsideCorrupt()
	sys := a.sysfs()
	if !sys.Supported() {
		return nil
	}
	id, err := kernel.Read(a.root())
	if err != nil {
		return err
	}
	if _, err := os.Stat(a.unloadingPath()); err == nil {
		a.logf("finishing an unload that was interrupted")
		if _, err := a.unloadAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("finish the interrupted unload: %w", err))
		}
	}
	errs = append(errs, a.settleTransitions(ctx))
	errs = append(errs, a.settlePending(id))
	errs = append(errs, a.settleRecord(id))
	errs = append(errs, a.removeOrphans(ctx))
	return errors.Join(errs...)
}

// removeTemps removes the temporary files of interrupted writes.
func (a *Agent) removeTemps() {
	dirs := []string{a.stateDir(), a.cacheDir()}
	if ents, err := os.ReadDir(a.cacheDir()); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(a.cacheDir(), e.Name()))
			}
		}
	}
	for _, d := range dirs {
		removed, err := atomicfile.RemoveTemps(d)
		for _, name := range removed {
			a.logf("removed %s, left by an interrupted write", filepath.Join(d, name))
		}
		if err != nil {
			a.logf("warning: remove temporary files in %s: %v", d, err)
		}
	}
}

// corruptSuffix is added to a state file that cannot be read.
const corruptSuffix = ".corrupt"

// setAsideCorrupt renames each state file that cannot be read, so that it
// stops every kcarectl no longer, and says so. The record is rebuilt from
// the kernel and the verified cache, the index state from the portal's
// next index.
func (a *Agent) setAsideCorrupt() {
	for _, f := range []struct {
		path string
		read func() error
	}{
		{a.statePath(), func() error { _, err := a.readState(); return err }},
		{a.pendingPath(), func() error { _, err := a.readPending(); return err }},
		{a.indexStatePath(), func() error { _, err := a.readIndexState(); return err }},
	} {
		path := f.path
		err := f.read()
		if err == nil {
			continue
		}
		if rerr := os.Rename(path, path+corruptSuffix); rerr != nil {
			a.logf("warning: %v; and it cannot be set aside: %v", err, rerr)
			continue
		}
		atomicfile.SyncDir(filepath.Dir(path))
		a.logf("%s is unreadable (%v); set aside as %s", path, unwrapPath(err, path), filepath.Base(path)+corruptSuffix)
	}
}

// unwrapPath drops the "read PATH: " that err starts with.
func unwrapPath(err error, path string) string {
	return strings.TrimPrefix(strings.TrimPrefix(err.Error(), "read index state "+path+": "), "read "+path+": ")
}

// settleTransitions waits for the kcare transitions in progress.
func (a *Agent) settleTransitions(ctx context.Context) error {
	sys := a.sysfs()
	patches, err := sys.Patches()
	if err != nil {
		return err
	}
	bound := a.Config.TransitionTimeout
	if bound <= 0 {
		bound = config.DefaultTransitionTimeout
	}
	var errs []error
	for _, p := range patches {
		if !strings.HasPrefix(p.Name, ModulePrefix) || !p.Transition {
			continue
		}
		if !p.Enabled {
			// Being disabled: it goes by itself.
			a.logf("waiting up to %s for %s, being disabled, to go", ReverseBound, p.Name)
			if err := sys.WaitGone(ctx, p.Name, ReverseBound); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		a.logf("the transition of %s was left in progress; waiting up to %s for it to finish", p.Name, bound)
		if err := sys.WaitTransition(ctx, p.Name, bound); err != nil {
			if err := a.reverse(ctx, p.Name, err); err != nil && !errors.Is(err, ErrStalled) {
				errs = append(errs, err)
			}
			a.logf("reversed the transition of %s", p.Name)
			continue
		}
		a.logf("the transition of %s finished", p.Name)
	}
	return errors.Join(errs...)
}

// inEffect lists the kcare patches the kernel has in effect: enabled and
// not in a transition.
func (a *Agent) inEffect() []string {
	patches, _ := a.sysfs().Patches()
	var out []string
	for _, p := range patches {
		if strings.HasPrefix(p.Name, ModulePrefix) && p.Enabled && !p.Transition {
			out = append(out, p.Name)
		}
	}
	return out
}

// settlePending finishes or forgets an interrupted apply.
func (a *Agent) settlePending(id kernel.Identity) error {
	p, err := a.readPending()
	if err != nil || p == nil {
		return err
	}
	m := &p.Manifest
	if m.Kernel.BuildID == id.BuildID && contains(a.inEffect(), m.Module.Name) {
		if err := os.Rename(a.pendingPath(), a.statePath()); err != nil {
			return fmt.Errorf("record state: %w", err)
		}
		if err := atomicfile.SyncDir(a.stateDir()); err != nil {
			return fmt.Errorf("record state: %w", err)
		}
		a.logf("recorded level %d (%s): an interrupted apply had put it in effect", m.Level, m.Module.Name)
		return a.writeEffective(m)
	}
	if err := os.Remove(a.pendingPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget the interrupted apply: %w", err)
	}
	atomicfile.SyncDir(a.stateDir())
	a.logf("level %d (%s) was not applied: its apply was interrupted before it took effect", m.Level, m.Module.Name)
	return nil
}

// settleRecord makes the record name the level in effect, when it names
// another or none and a verified cached bundle holds the one in effect.
func (a *Agent) settleRecord(id kernel.Identity) error {
	live := a.inEffect()
	st, err := a.readState()
	if err != nil {
		return err
	}
	if st != nil && st.Manifest.Kernel.BuildID == id.BuildID && contains(live, st.Manifest.Module.Name) {
		// Agreement; make sure the files derived from the record say so.
		return a.writeEffective(&st.Manifest)
	}
	if len(live) == 0 {
		return nil
	}
	name := live[len(live)-1]
	c, err := a.findCached(id, func(m *bundle.Manifest) bool { return m.Module.Name == name })
	if err != nil {
		was := "nothing"
		if st != nil {
			was = fmt.Sprintf("level %d (%s)", st.Manifest.Level, st.Manifest.Module.Name)
		}
		a.logf("warning: the kernel has %s in effect, the record names %s, and no verified cached bundle holds %s; "+
			"kcarectl --update or --unload settles it", name, was, name)
		return nil
	}
	st = &State{Manifest: c.b.Manifest, Applied: a.now().UTC().Truncate(time.Second), Digest: bundle.Digest(c.data),
		Bundle: c.rel, Signer: c.b.Signer.Fingerprint}
	if err := a.writeState(st); err != nil {
		return fmt.Errorf("record state: %w", err)
	}
	a.logf("recorded level %d (%s), in effect in the kernel, from its verified cached bundle %s", st.Manifest.Level, name, c.rel)
	return a.writeEffective(&st.Manifest)
}

// removeOrphans removes the kcare modules loaded without their patch.
func (a *Agent) removeOrphans(ctx context.Context) error {
	var errs []error
	for _, name := range a.kcareModules() {
		if a.sysfs().Exists(name) {
			continue
		}
		if err := a.Loader.Unload(ctx, name); err != nil && !errors.Is(err, kmod.ErrAbsent) {
			errs = append(errs, fmt.Errorf("remove module %s, loaded without its patch: %w", name, err))
			continue
		}
		a.logf("removed module %s, loaded without its patch", name)
	}
	return errors.Join(errs...)
}

// cachedBundle is a bundle found in the cache and verified.
type cachedBundle struct {
	b         *bundle.Bundle
	data, sig []byte
	rel       string         // relative to the cache dir
	req       *index.Request // the request to record it with; nil: the record's
}

// findCached returns the highest cached level for the kernel id that
// verifies and that want accepts. A cached bundle that does not verify is
// reported and skipped, never loaded.
func (a *Agent) findCached(id kernel.Identity, want func(*bundle.Manifest) bool) (*cachedBundle, error) {
	dir := filepath.Join(a.cacheDir(), id.BuildID)
	ents, _ := os.ReadDir(dir)
	type cand struct {
		level int
		name  string
	}
	var cands []cand
	for _, e := range ents {
		if n, ok := cachedLevel(e.Name()); ok {
			cands = append(cands, cand{n, e.Name()})
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].level != cands[j].level {
			return cands[i].level > cands[j].level
		}
		return cands[i].name < cands[j].name
	})
	keys, err := a.keyring()
	if err != nil {
		return nil, err
	}
	for _, c := range cands {
		rel := filepath.Join(id.BuildID, c.name)
		path := filepath.Join(a.cacheDir(), rel)
		data, err := readLimited(path, bundle.MaxBundleSize)
		if err != nil {
			continue
		}
		sig, err := readLimited(path+".sig", bundle.MaxSignatureSize)
		if err != nil {
			a.logf("warning: cached bundle %s has no usable signature (%v); skipped", path, err)
			continue
		}
		b, err := bundle.Open(data, sig, keys.AsSigned())
		if err != nil {
			a.logf("warning: cached bundle %s: %v; skipped", path, err)
			continue
		}
		if b.Manifest.Kernel.BuildID != id.BuildID || !want(&b.Manifest) {
			continue
		}
		return &cachedBundle{b: b, data: data, sig: sig, rel: rel}, nil
	}
	return nil, fmt.Errorf("no cached patches for kernel %s (%s): %w", id.Release, id.BuildID, ErrNothingToDo)
}

// cachedLevel parses the name of a cached bundle: level-N.kcp, or
// level-N-DIGEST.kcp beside a recorded one of the same level.
func cachedLevel(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "level-")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(rest, ".kcp")
	if !ok {
		return 0, false
	}
	num, digest, _ := strings.Cut(rest, "-")
	var n int
	if _, err := fmt.Sscanf(num, "%d", &n); err != nil || n < 1 || fmt.Sprint(n) != num {
		return 0, false
	}
	if digest != "" && (len(digest) != 12 || strings.Trim(digest, "0123456789abcdef") != "") {
		return 0, false
	}
	return n, true
}
