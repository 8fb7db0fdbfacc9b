// Package agent is kcarectl's workflow: verify a signed patch bundle,
// load it into the running kernel through the livepatch subsystem, wait for
// the transition, remove the level it replaced, record the state, and
// reverse cleanly when anything fails.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/failure"
	"github.com/kcare/kcare/internal/faultpoint"
	"github.com/kcare/kcare/internal/flock"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/kmod"
	"github.com/kcare/kcare/internal/livepatch"
	"github.com/kcare/kcare/internal/trust"
)

// Bounds on waits, named so every message can say them.
const (
	// ReverseBound bounds the wait for a reversed or disabled patch to go.
	ReverseBound = 60 * time.Second
	// ReplacedBound bounds the wait for a replaced patch to be freed.
	ReplacedBound = 30 * time.Second
	// LockBound bounds the wait for another kcarectl to finish.
	LockBound = 30 * time.Second
)

// ModulePrefix starts the name of every kcare livepatch module.
const ModulePrefix = "kcare_"

// Errors for callers to tell apart. Each is also a failure category
// (internal/failure), which kcarectl maps to its exit codes.
var (
	// ErrNothingToDo is not a failure: the level is already in effect, or
	// there is nothing for this kernel.
	ErrNothingToDo = errors.New("nothing to do")
	// ErrUnknownKernel is the nothing-to-do of a kernel the portal has no
	// patches for at all (KernelCare's unknown kernel); it is also
	// ErrNothingToDo.
	ErrUnknownKernel = errors.New("unknown kernel")
	ErrWrongKernel   = failure.New(failure.Refused, "bundle is for another kernel")
	ErrVermagic      = failure.New(failure.Refused, "module vermagic does not match the running kernel")
	ErrNotPatch      = failure.New(failure.Refused, "module is not a kcare livepatch")
	ErrNoLivepatch   = failure.New(failure.Unsupported, "kernel has no livepatch support")
	ErrStalled       = failure.New(failure.Stalled, "transition stalled and was reversed")
	ErrLocked        = failure.New(failure.Locked, "another kcarectl is changing the kernel")
	ErrLoad          = failure.New(failure.Unsupported, "kernel refused the module")
	// ErrDowngrade is a signed index offering a level below the one in
	// effect with no rollback order for this server, and no change of
	// this host's own PREFIX or STICKY_PATCH to ask for it.
	ErrDowngrade = failure.New(failure.Refused, "downgrade refused")
	// ErrStaleOrder is a signed rollback order from another level than
	// the one in effect: an order the portal gave for an earlier state,
	// replayed. It also matches ErrDowngrade.
	ErrStaleOrder = failure.New(failure.Refused, "rollback order is for another level")
)

// Agent applies and removes patch levels on one kernel.
type Agent struct {
	// Root holds the /sys, /proc, /var trees; "" means "/".
	Root   string
	Config config.Config
	// Keys verifies bundles; nil loads Config.KeyringDir under Root.
	Keys   *trust.Keyring
	Loader kmod.Loader
	// Log gets progress and warnings (stderr in kcarectl); nil discards.
	Log io.Writer
	Now func() time.Time
	// LockWait bounds the wait for the kcarectl lock; zero means LockBound.
	LockWait time.Duration
}

func (a *Agent) root() string {
	if a.Root == "" {
		return "/"
	}
	return a.Root
}

func (a *Agent) sysfs() livepatch.Sysfs { return livepatch.Sysfs{Root: a.root()} }

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Agent) logf(format string, args ...any) {
	if a.Log != nil {
		fmt.Fprintf(a.Log, format+"\n", args...)
	}
}

func (a *Agent) keyring() (*trust.Keyring, error) {
	if a.Keys != nil {
		return a.Keys, nil
	}
	dir := a.Config.KeyringDir
	if dir == "" {
		dir = config.DefaultKeyringDir
	}
	k, err := trust.LoadKeyring(filepath.Join(a.root(), dir))
	if err != nil {
		return nil, fmt.Errorf("load keyring: %w", err)
	}
	a.Keys = k
	return k, nil
}

// lock takes the kcarectl lock, waiting up to LockBound, and recovers
// from a kcarectl that stopped part-way (recover) before it returns.
func (a *Agent) lock(ctx context.Context) (unlock func(), err error) {
	unlock, err = a.takeLock(ctx, false)
	if err != nil {
		return nil, err
	}
	if err := a.recover(ctx); err != nil {
		a.logf("warning: %v", err)
	}
	return unlock, nil
}

// tryLock takes the kcarectl lock if no other kcarectl holds it, and
// fails with ErrLocked if one does.
func (a *Agent) tryLock() (unlock func(), err error) {
	return a.takeLock(context.Background(), true)
}

// takeLock takes the kcarectl lock, waiting up to LockBound unless noWait.
func (a *Agent) takeLock(ctx context.Context, noWait bool) (unlock func(), err error) {
	if err := os.MkdirAll(a.stateDir(), 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	path := filepath.Join(a.stateDir(), "kcarectl.lock")
	f, err := atomicfile.OpenLock(path, 0o600)
	if err != nil {
		return nil, err
	}
	wait := a.LockWait
	if wait <= 0 {
		wait = LockBound
	}
	if noWait {
		wait = 0
	}
	if err := flock.Lock(ctx, f, wait); err != nil {
		f.Close()
		switch {
		case errors.Is(err, flock.ErrHeld) && noWait:
			return nil, fmt.Errorf("%s is held: %w", path, ErrLocked)
		case errors.Is(err, flock.ErrHeld):
			return nil, fmt.Errorf("waited %s for %s: %w", wait, path, ErrLocked)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Result says what Apply did.
type Result struct {
	Manifest bundle.Manifest
	Replaced []string // modules removed after the transition
	Elapsed  time.Duration
}

// Apply verifies the bundle data with its detached signature sig and
// applies it. Nothing touches the kernel until every check has passed. If
// the transition does not finish within Config.TransitionTimeout, it is
// reversed, the module removed, and the previous level stays in effect
// and recorded; the error then wraps ErrStalled.
func (a *Agent) Apply(ctx context.Context, data, sig []byte) (*Result, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return a.applyWith(ctx, data, sig, nil, nil)
}

// apply applies a verified bundle; req is the index request it was
// fetched with, recorded with it, or nil for a bundle given by hand.
func (a *Agent) apply(ctx context.Context, data, sig []byte, req *index.Request) (*Result, error) {
	return a.applyWith(ctx, data, sig, req, nil)
}

// applyWith is apply verifying with keys; nil is the agent's keyring.
func (a *Agent) applyWith(ctx context.Context, data, sig []byte, req *index.Request, keys *trust.Keyring) (*Result, error) {
	start := time.Now()
	b, id, err := a.check(data, sig, keys)
	if err != nil {
		return nil, err
	}
	faultpoint.Hit(faultpoint.AfterVerify)
	m := &b.Manifest
	sys := a.sysfs()
	if p, err := sys.Patch(m.Module.Name); err == nil && p.Enabled && !p.Transition {
		// Already in effect: make sure the record says so too.
		if err := a.record(b, data, sig, req); err != nil {
			return nil, err
		}
		return &Result{Manifest: *m}, fmt.Errorf("level %d (%s) is already applied: %w", m.Level, m.Module.Name, ErrNothingToDo)
	}
	// A kcare module of this name loaded but not an enabled patch is a
	// leftover (a disabled patch never removed): take it out first.
	if a.moduleLoaded(m.Module.Name) && !sys.Exists(m.Module.Name) {
		if err := a.Loader.Unload(ctx, m.Module.Name); err != nil {
			return nil, fmt.Errorf("remove leftover module %s: %w", m.Module.Name, err)
		}
	}

	// The bundle is cached and the record of the new level written before
	// the kernel is touched: a full disk stops the apply here, and a
	// kcarectl stopped from here on leaves what the next one needs to
	// finish or undo it (recover).
	c, err := a.prepare(b, data, sig, req)
	if err != nil {
		return nil, err
	}
	a.logf("applying level %d (%s) to %s", m.Level, m.Module.Name, id.Release)
	// The kernel's health just before the load, which the apply is judged
	// against (its record, the check-ins' telemetry).
	before, herr := a.health()
	if herr != nil {
		a.logf("warning: the kernel's health before the apply: %v", herr)
	}
	ap := lastApply{Level: m.Level, At: a.now().UTC().Truncate(time.Second), Before: before}
	if herr == nil {
		defer func() { a.recordApply(ap) }()
	}
	if err := a.Loader.Load(ctx, b.Module); err != nil {
		c.abort()
		return nil, fmt.Errorf("load %s: %w: %w", m.Module.Name, ErrLoad, err)
	}
	faultpoint.Hit(faultpoint.AfterLoad)
	bound := a.Config.TransitionTimeout
	if bound <= 0 {
		bound = config.DefaultTransitionTimeout
	}
	a.logf("waiting up to %s for transition of %s to finish", bound, m.Module.Name)
	if err := sys.WaitTransition(ctx, m.Module.Name, bound); err != nil {
		err = a.reverse(ctx, m.Module.Name, err)
		c.abort()
		return nil, err
	}
	p, err := sys.Patch(m.Module.Name)
	if err != nil || !p.Enabled {
		// The kernel took the module but the patch is not in effect.
		rerr := a.removePatch(context.WithoutCancel(ctx), m.Module.Name)
		c.abort()
		return nil, errors.Join(fmt.Errorf("patch %s not enabled after load: %w", m.Module.Name, ErrLoad), err, rerr)
	}

	// The new level is in effect. Record it, and how the kernel took it,
	// before cleaning up, so that a crash from here on leaves a record
	// that agrees with the kernel; an interrupt now stops nothing half
	// way: the cleanup runs to its bound.
	ap.OK = true
	if herr == nil {
		if after, err := a.health(); err == nil {
			ap.After = &after
			if v := verdict(before, after); v != "" {
				a.logf("warning: level %d is applied, but the kernel logged %s as it was", m.Level, v)
				c.st.Unhealthy = v
			}
		}
	}
	if err := c.commit(); err != nil {
		return nil, err
	}
	faultpoint.Hit(faultpoint.AfterRecord)
	replaced, err := a.removeReplaced(context.WithoutCancel(ctx), m.Module.Name)
	res := &Result{Manifest: *m, Replaced: replaced, Elapsed: time.Since(start)}
	if err != nil {
		return res, fmt.Errorf("level %d applied, but removing the replaced modules failed: %w", m.Level, err)
	}
	return res, nil
}

// check verifies a bundle for the running kernel, in a fixed order:
// signature, archive and digest, target build-id, module tags, kernel
// support.
func (a *Agent) check(data, sig []byte, keys *trust.Keyring) (*bundle.Bundle, kernel.Identity, error) {
	if keys == nil {
		k, err := a.keyring()
		if err != nil {
			return nil, kernel.Identity{}, err
		}
		keys = k
	}
	b, err := bundle.Open(data, sig, keys)
	if err != nil {
		return nil, kernel.Identity{}, err
	}
	id, err := kernel.Read(a.root())
	if err != nil {
		return nil, id, err
	}
	m := &b.Manifest
	if m.Kernel.BuildID != id.BuildID {
		return nil, id, fmt.Errorf("%w: bundle %s is for build-id %s (%s), running kernel is %s (%s)",
			ErrWrongKernel, m.Name, m.Kernel.BuildID, m.Kernel.Release, id.BuildID, id.Release)
	}
	if m.Kernel.Release != id.Release {
		return nil, id, fmt.Errorf("%w: bundle %s is for release %s, running kernel is %s", ErrWrongKernel, m.Name, m.Kernel.Release, id.Release)
	}
	info, err := kmod.ReadInfo(b.Module)
	if err != nil {
		return nil, id, fmt.Errorf("%w: %v", bundle.ErrMalformed, err)
	}
	if info.Vermagic != m.Module.Vermagic || info.Release() != id.Release {
		return nil, id, fmt.Errorf("%w: module says %q, running kernel is %s", ErrVermagic, info.Vermagic, id.Release)
	}
	if !info.Livepatch || info.Name != m.Module.Name || !strings.HasPrefix(info.Name, ModulePrefix) {
		return nil, id, fmt.Errorf("%w: module %s (livepatch tag %v, manifest says %s)", ErrNotPatch, info.Name, info.Livepatch, m.Module.Name)
	}
	if !a.sysfs().Supported() {
		return nil, id, ErrNoLivepatch
	}
	return b, id, nil
}

// reverse handles a transition that did not finish: write 0 to enabled,
// wait for the reversal and the directory to go, remove the module. It
// runs to the end even when ctx has ended (an interrupt during the wait
// is a cause to reverse, not a reason to stop half way): its own waits
// are bounded by ReverseBound.
func (a *Agent) reverse(ctx context.Context, name string, cause error) error {
	a.logf("%v; reversing", cause)
	rerr := a.removePatch(context.WithoutCancel(ctx), name)
	var stall *livepatch.StallError
	if errors.As(cause, &stall) {
		if rerr != nil {
			return fmt.Errorf("%w: %v; and the reversal failed: %v", ErrStalled, cause, rerr)
		}
		return fmt.Errorf("%w: %v", ErrStalled, cause)
	}
	return errors.Join(cause, rerr)
}

// removePatch disables the patch name, waits for its directory to vanish,
// and removes its module.
func (a *Agent) removePatch(ctx context.Context, name string) error {
	sys := a.sysfs()
	if sys.Exists(name) {
		if err := sys.Disable(name); err != nil && !errors.Is(err, livepatch.ErrNoPatch) {
			return err
		}
		if err := sys.WaitGone(ctx, name, ReverseBound); err != nil {
			return err
		}
	}
	if !a.moduleLoaded(name) {
		return nil
	}
	if err := a.Loader.Unload(ctx, name); err != nil && !errors.Is(err, kmod.ErrAbsent) {
		return fmt.Errorf("remove module %s: %w", name, err)
	}
	return nil
}

// removeReplaced removes every kcare module except keep, once the kernel
// has freed the patch it replaced.
func (a *Agent) removeReplaced(ctx context.Context, keep string) ([]string, error) {
	var removed []string
	var errs []error
	for _, name := range a.kcareModules() {
		if name == keep {
			continue
		}
		if err := a.sysfs().WaitGone(ctx, name, ReplacedBound); err != nil {
			errs = append(errs, err)
			continue
		}
		faultpoint.Hit(faultpoint.RemoveReplaced)
		if err := a.Loader.Unload(ctx, name); err != nil && !errors.Is(err, kmod.ErrAbsent) {
			errs = append(errs, fmt.Errorf("remove replaced module %s: %w", name, err))
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// kcareModules lists the loaded modules whose name starts with kcare_.
func (a *Agent) kcareModules() []string {
	ents, _ := os.ReadDir(filepath.Join(a.root(), "sys/module"))
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ModulePrefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func (a *Agent) moduleLoaded(name string) bool {
	_, err := os.Stat(filepath.Join(a.root(), "sys/module", name))
	return err == nil
}

// record caches the bundle and writes the state for an applied level,
// with the index request it was fetched with (nil: kept from the record
// of the same bundle, if any).
func (a *Agent) record(b *bundle.Bundle, data, sig []byte, req *index.Request) error {
	c, err := a.prepare(b, data, sig, req)
	if err != nil {
		return err
	}
	if err := c.commit(); err != nil {
		c.abort()
		return err
	}
	return nil
}

// Unload disables and removes every kcare patch, waiting as the kernel
// selftests do, and records that nothing is applied.
func (a *Agent) Unload(ctx context.Context) ([]string, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !a.sysfs().Supported() {
		return nil, ErrNoLivepatch
	}
	if err := writeAtomic(a.unloadingPath(), nil, 0o644); err != nil {
		return nil, fmt.Errorf("unload: %w", err)
	}
	removed, err := a.unloadAll(ctx)
	if err != nil {
		return removed, err
	}
	if len(removed) == 0 {
		return nil, fmt.Errorf("no kcare patches loaded: %w", ErrNothingToDo)
	}
	return removed, nil
}

// unloadAll disables every kcare patch, newest first, waits for each to
// go, removes the modules, and records that nothing is applied. It ends
// the unload UnloadingFile marks: when it fails, the record still names
// the level it had, which the kernel no longer has in effect.
func (a *Agent) unloadAll(ctx context.Context) ([]string, error) {
	removed, err := a.disableAll(ctx)
	os.Remove(a.unloadingPath())
	atomicfile.SyncDir(a.stateDir())
	return removed, err
}

func (a *Agent) disableAll(ctx context.Context) ([]string, error) {
	sys := a.sysfs()
	patches, err := sys.Patches()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	// The newest patch is on top of the kernel's stack; disabling goes from the top.
	for i := len(patches) - 1; i >= 0; i-- {
		p := patches[i]
		if !strings.HasPrefix(p.Name, ModulePrefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			// Interrupted: stop before the next patch, not within one.
			errs = append(errs, err)
			break
		}
		a.logf("disabling %s, waiting up to %s for it to go", p.Name, ReverseBound)
		if err := sys.Disable(p.Name); err != nil && !errors.Is(err, livepatch.ErrNoPatch) {
			errs = append(errs, err)
			continue
		}
		if err := sys.WaitGone(context.WithoutCancel(ctx), p.Name, ReverseBound); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p.Name)
	}
	faultpoint.Hit(faultpoint.Unload)
	for _, name := range a.kcareModules() {
		if sys.Exists(name) {
			continue
		}
		if err := a.Loader.Unload(context.WithoutCancel(ctx), name); err != nil && !errors.Is(err, kmod.ErrAbsent) {
			errs = append(errs, fmt.Errorf("remove module %s: %w", name, err))
			continue
		}
		if !contains(removed, name) {
			removed = append(removed, name)
		}
	}
	if len(errs) > 0 {
		return removed, errors.Join(errs...)
	}
	if err := a.writeState(nil); err != nil {
		return removed, err
	}
	if err := a.clearEffective(); err != nil {
		return removed, err
	}
	return removed, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// UpdateLocal re-applies the cached level for the running kernel with no
// network, as UPDATE_POLICY=LOCAL asks (at boot).
func (a *Agent) UpdateLocal(ctx context.Context) (*Result, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	id, err := kernel.Read(a.root())
	if err != nil {
		return nil, err
	}
	c, err := a.bootBundle(id)
	if err != nil {
		return nil, err
	}
	keys, err := a.keyring()
	if err != nil {
		return nil, err
	}
	a.logf("re-applying cached %s", filepath.Join(a.cacheDir(), c.rel))
	// The clock plays no part: this is the bundle this machine verified
	// and recorded, checked again against the publisher's key as of its
	// signing; no answer from the network is involved (docs/reliability.md).
	return a.applyWith(ctx, c.data, c.sig, c.req, keys.AsSigned())
}

// bootBundle finds the bundle to re-apply at boot: the recorded level,
// unless the portal ordered it back (an order kept with the record when
// a verified index carried it) or the kernel logged a warning, an oops or
// a new taint as it was applied. Then it is the level the order names,
// if cached; else the last level below it that was in effect and healthy
// (State.Previous), if cached; else nothing, with ErrNothingToDo: the
// portal's next answer decides. A level under an order is never
// re-applied from the cache.
func (a *Agent) bootBundle(id kernel.Identity) (*cachedBundle, error) {
	st, err := a.readState()
	if err != nil {
		return nil, err
	}
	if st == nil || st.Manifest.Kernel.BuildID != id.BuildID || st.good() {
		return a.localBundle(id)
	}
	why := "was unhealthy when applied (" + st.Unhealthy + ")"
	if r := st.Rollback; r != nil {
		why = fmt.Sprintf("is under the portal's order back to level %d", r.Level)
		if c, err := a.findCached(id, func(m *bundle.Manifest) bool { return m.Level == r.Level }); err == nil {
			a.logf("level %d %s; going back to it", st.Manifest.Level, why)
			c.req = st.Request
			return c, nil
		}
	}
	if p := st.Previous; p != nil && (st.Rollback == nil || p.Level <= st.Rollback.Level) {
		c, err := a.cachedRef(id, p)
		if err == nil {
			a.logf("level %d %s; going back to level %d, the last healthy one", st.Manifest.Level, why, p.Level)
			c.req = st.Request
			return c, nil
		}
		a.logf("warning: the last healthy level %d: %v", p.Level, err)
	}
	return nil, fmt.Errorf("level %d %s, and no level to go back to is cached; nothing re-applied: %w", st.Manifest.Level, why, ErrNothingToDo)
}

// cachedRef reads and verifies the cached bundle p names, for the kernel
// id.
func (a *Agent) cachedRef(id kernel.Identity, p *CachedLevel) (*cachedBundle, error) {
	path := filepath.Join(a.cacheDir(), p.Bundle)
	data, err := readLimited(path, bundle.MaxBundleSize)
	if err != nil {
		return nil, err
	}
	if d := bundle.Digest(data); d != p.Digest {
		return nil, fmt.Errorf("%w: %s has sha256 %s, the record says %s", bundle.ErrDigestMismatch, path, d, p.Digest)
	}
	sig, err := readLimited(path+".sig", bundle.MaxSignatureSize)
	if err != nil {
		return nil, err
	}
	keys, err := a.keyring()
	if err != nil {
		return nil, err
	}
	b, err := bundle.Open(data, sig, keys.AsSigned())
	if err != nil {
		return nil, err
	}
	if b.Manifest.Kernel.BuildID != id.BuildID || b.Manifest.Level != p.Level {
		return nil, fmt.Errorf("%s holds level %d for build-id %s", path, b.Manifest.Level, b.Manifest.Kernel.BuildID)
	}
	return &cachedBundle{b: b, data: data, sig: sig, rel: p.Bundle}, nil
}

// checkCached checks the bundle the boot-time re-apply would load for
// the kernel id: there, the recorded one, and signed by a trusted key.
func (a *Agent) checkCached(id kernel.Identity) error {
	c, err := a.localBundle(id)
	if err != nil {
		return err
	}
	if c.b != nil {
		return nil // findCached verified it
	}
	keys, err := a.keyring()
	if err != nil {
		return err
	}
	_, err = bundle.Open(c.data, c.sig, keys.AsSigned())
	return err
}

// localBundle finds the bundle to re-apply with no network: the recorded
// one if it is for this kernel, which must be the very bundle recorded;
// else the highest cached level for this kernel that verifies.
func (a *Agent) localBundle(id kernel.Identity) (*cachedBundle, error) {
	st, err := a.readState()
	if err != nil {
		return nil, err
	}
	if st == nil || st.Manifest.Kernel.BuildID != id.BuildID || st.Bundle == "" {
		return a.findCached(id, func(*bundle.Manifest) bool { return true })
	}
	path := filepath.Join(a.cacheDir(), st.Bundle)
	again := "; kcarectl --update fetches it again"
	data, err := readLimited(path, bundle.MaxBundleSize)
	if err != nil {
		return nil, fmt.Errorf("read the cached bundle of level %d: %w%s", st.Manifest.Level, err, again)
	}
	if d := bundle.Digest(data); d != st.Digest {
		return nil, fmt.Errorf("%w: the cached bundle %s has sha256 %s, the record says %s%s", bundle.ErrDigestMismatch, path, d, st.Digest, again)
	}
	sig, err := readLimited(path+".sig", bundle.MaxSignatureSize)
	if err != nil {
		return nil, fmt.Errorf("read the signature of the cached bundle of level %d: %w%s", st.Manifest.Level, err, again)
	}
	return &cachedBundle{data: data, sig: sig, rel: st.Bundle}, nil
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w (limit %d bytes)", path, bundle.ErrTooLarge, max)
	}
	return b, nil
}

// ReadFile reads a bundle or signature file with the bundle size limits.
func ReadFile(path string, max int64) ([]byte, error) { return readLimited(path, max) }
