package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/trust"
)

const vermagic = fakekernel.Release + " SMP preempt mod_unload modversions "

// keys are made once: key generation is the slow part of these tests.
var publisher, stranger = mustSigner(), mustSigner()

func mustSigner() *trust.Signer {
	priv, _, err := trust.GenerateKey("kcare test publisher", "")
	if err != nil {
		panic(err)
	}
	s, err := trust.ReadSigner(priv)
	if err != nil {
		panic(err)
	}
	return s
}

func keyring(t *testing.T, signers ...*trust.Signer) *trust.Keyring {
	t.Helper()
	var all []byte
	for _, s := range signers {
		pub, err := s.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, pub...)
	}
	k, err := trust.ReadKeyring(all)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func manifest(level int) bundle.Manifest {
	name := []string{"", "kcare_test_l1", "kcare_test_l2", "kcare_test_l3"}[level]
	return bundle.Manifest{
		Name:  fakekernel.Release + "-L" + string(rune('0'+level)),
		Level: level,
		Kernel: bundle.Kernel{
			BuildID:  fakekernel.BuildID,
			Release:  fakekernel.Release,
			Version:  fakekernel.Version,
			KernelID: kernel.KernelID(fakekernel.Version),
		},
		Module:           bundle.Module{File: name + ".ko", Name: name, Vermagic: vermagic},
		CVEs:             []bundle.CVE{{ID: "CVE-2026-1000" + string(rune('0'+level)), Description: "fixture fix", URL: "https://example.org/cve"}},
		EffectiveRelease: "6.1.0-56.1000" + string(rune('0'+level)) + "-amd64",
		Released:         time.Date(2026, 11, level, 12, 0, 0, 0, time.UTC),
	}
}

// pack makes a signed bundle of m with a fake module.
func pack(t *testing.T, s *trust.Signer, m bundle.Manifest) (data, sig []byte) {
	t.Helper()
	var buf bytes.Buffer
	mod := fakekernel.Module(m.Module.Name, m.Module.Vermagic, true)
	if err := bundle.Write(&buf, m, mod); err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sig
}

type env struct {
	k *fakekernel.Kernel
	a *Agent
}

func newEnv(t *testing.T, root string, livepatch bool) *env {
	t.Helper()
	k, err := fakekernel.New(root, livepatch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	cfg := config.Default()
	cfg.TransitionTimeout = 5 * time.Second
	return &env{k: k, a: &Agent{Root: root, Config: cfg, Keys: keyring(t, publisher), Loader: k, Now: testNow}}
}

// testNow is the agents' clock in these tests: fixed, after the fixture
// bundles' release dates, so that no test depends on the day it runs.
func testNow() time.Time { return time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC) }

func (e *env) apply(t *testing.T, level int) *Result {
	t.Helper()
	data, sig := pack(t, publisher, manifest(level))
	res, err := e.a.Apply(context.Background(), data, sig)
	if err != nil {
		t.Fatalf("Apply level %d: %v", level, err)
	}
	return res
}

func (e *env) info(t *testing.T) *Info {
	t.Helper()
	info, err := e.a.Info()
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	return info
}

func TestApplyReplaceUnload(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	if got := e.info(t); got.State != "none" || got.EffectiveRelease != fakekernel.Release {
		t.Fatalf("before: state %q effective %q, want none %s", got.State, got.EffectiveRelease, fakekernel.Release)
	}

	e.apply(t, 1)
	got := e.info(t)
	if got.State != "applied" || got.Level != 1 || got.EffectiveRelease != "6.1.0-56.10001-amd64" || got.Module != "kcare_test_l1" {
		t.Fatalf("after level 1: %+v", got)
	}

	res := e.apply(t, 2)
	if len(res.Replaced) != 1 || res.Replaced[0] != "kcare_test_l1" {
		t.Errorf("level 2 replaced %v, want [kcare_test_l1]", res.Replaced)
	}
	if mods := e.k.Modules(); len(mods) != 1 || mods[0] != "kcare_test_l2" {
		t.Errorf("modules after level 2 = %v, want [kcare_test_l2]", mods)
	}
	if got := e.info(t); got.Level != 2 || len(got.CVEs) != 1 || got.CVEs[0].ID != "CVE-2026-10002" {
		t.Errorf("after level 2: level %d cves %v", got.Level, got.CVEs)
	}

	data, sig := pack(t, publisher, manifest(2))
	if _, err := e.a.Apply(context.Background(), data, sig); !errors.Is(err, ErrNothingToDo) {
		t.Errorf("re-apply level 2 error = %v, want ErrNothingToDo", err)
	}

	removed, err := e.a.Unload(context.Background())
	if err != nil || len(removed) != 1 || removed[0] != "kcare_test_l2" {
		t.Fatalf("Unload = %v, %v; want [kcare_test_l2]", removed, err)
	}
	if mods := e.k.Modules(); len(mods) != 0 {
		t.Errorf("modules after unload = %v, want none", mods)
	}
	if got := e.info(t); got.State != "none" || got.Level != 0 {
		t.Errorf("after unload: state %q level %d, want none 0", got.State, got.Level)
	}
	if _, err := e.a.Unload(context.Background()); !errors.Is(err, ErrNothingToDo) {
		t.Errorf("second Unload error = %v, want ErrNothingToDo", err)
	}
}

func TestRefusals(t *testing.T) {
	flip := func(b []byte) []byte {
		c := bytes.Clone(b)
		c[len(c)/2] ^= 0x01
		return c
	}
	good := func(t *testing.T) ([]byte, []byte) { return pack(t, publisher, manifest(1)) }
	tests := []struct {
		name      string
		livepatch bool
		make      func(t *testing.T) ([]byte, []byte)
		want      error
	}{
		{"flipped_byte", true, func(t *testing.T) ([]byte, []byte) { d, s := good(t); return flip(d), s }, trust.ErrBadSignature},
		{"unknown_key", true, func(t *testing.T) ([]byte, []byte) { return pack(t, stranger, manifest(1)) }, trust.ErrUnknownKey},
		{"unsigned", true, func(t *testing.T) ([]byte, []byte) { d, _ := good(t); return d, nil }, trust.ErrUnsigned},
		{"other_build_id", true, func(t *testing.T) ([]byte, []byte) {
			m := manifest(1)
			m.Kernel.BuildID = "0123456789abcdef0123456789abcdef01234567"
			return pack(t, publisher, m)
		}, ErrWrongKernel},
		{"other_release", true, func(t *testing.T) ([]byte, []byte) {
			m := manifest(1)
			m.Kernel.Release = "5.15.0-76-generic"
			m.Kernel.Version = "Linux version 5.15.0-76-generic (buildd@lcy02-amd64-019) #83-Ubuntu SMP\n"
			m.Module.Vermagic = "5.15.0-76-generic SMP mod_unload modversions "
			return pack(t, publisher, m)
		}, ErrWrongKernel},
		{"vermagic", true, func(t *testing.T) ([]byte, []byte) {
			m := manifest(1)
			var buf bytes.Buffer
			// The manifest claims the right vermagic; the module inside says otherwise.
			if err := bundle.Write(&buf, m, fakekernel.Module(m.Module.Name, fakekernel.Release+" SMP mod_unload ", true)); err != nil {
				t.Fatal(err)
			}
			sig, _ := publisher.Sign(bytes.NewReader(buf.Bytes()))
			return buf.Bytes(), sig
		}, ErrVermagic},
		{"not_livepatch", true, func(t *testing.T) ([]byte, []byte) {
			m := manifest(1)
			var buf bytes.Buffer
			if err := bundle.Write(&buf, m, fakekernel.Module(m.Module.Name, vermagic, false)); err != nil {
				t.Fatal(err)
			}
			sig, _ := publisher.Sign(bytes.NewReader(buf.Bytes()))
			return buf.Bytes(), sig
		}, ErrNotPatch},
		{"oversize", true, func(t *testing.T) ([]byte, []byte) {
			d := make([]byte, bundle.MaxBundleSize+1)
			sig, _ := publisher.Sign(bytes.NewReader(d))
			return d, sig
		}, bundle.ErrTooLarge},
		{"no_livepatch", false, good, ErrNoLivepatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, t.TempDir(), tt.livepatch)
			data, sig := tt.make(t)
			_, err := e.a.Apply(context.Background(), data, sig)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Apply error = %v, want %v", err, tt.want)
			}
			if n := e.k.Loads(); n != 0 {
				t.Errorf("%d modules loaded, want none", n)
			}
			if _, err := os.Stat(e.a.statePath()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state recorded after a refusal: %v", err)
			}
		})
	}
}

func TestStallReversed(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	e.apply(t, 2)
	e.k.StallTransitions(true)
	e.a.Config.TransitionTimeout = 50 * time.Millisecond
	data, sig := pack(t, publisher, manifest(3))
	_, err := e.a.Apply(context.Background(), data, sig)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("Apply level 3 error = %v, want ErrStalled", err)
	}
	if want := "pauser[4242]"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("error %q does not name the stalled task %s", err, want)
	}
	if mods := e.k.Modules(); len(mods) != 1 || mods[0] != "kcare_test_l2" {
		t.Errorf("modules after reversal = %v, want [kcare_test_l2]", mods)
	}
	if got := e.info(t); got.State != "applied" || got.Level != 2 {
		t.Errorf("after reversal: state %q level %d, want applied 2", got.State, got.Level)
	}
}

func TestUpdateLocalAfterReboot(t *testing.T) {
	root := t.TempDir()
	e := newEnv(t, root, true)
	e.apply(t, 1)
	e.apply(t, 2)
	e.k.Close()

	// A reboot: the same /var, a fresh kernel tree.
	for _, d := range []string{"sys", "proc"} {
		if err := os.RemoveAll(filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}
	k, err := fakekernel.New(root, true)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	e.k, e.a.Loader = k, k
	if got := e.info(t); got.State != "none" || got.CachedLevel != 2 {
		t.Fatalf("after reboot: state %q cached %d, want none 2", got.State, got.CachedLevel)
	}
	res, err := e.a.UpdateLocal(context.Background())
	if err != nil {
		t.Fatalf("UpdateLocal: %v", err)
	}
	if res.Manifest.Level != 2 {
		t.Errorf("UpdateLocal applied level %d, want 2", res.Manifest.Level)
	}
	if got := e.info(t); got.State != "applied" || got.Level != 2 {
		t.Errorf("after UpdateLocal: state %q level %d, want applied 2", got.State, got.Level)
	}
}

func TestUpdateLocalNothingCached(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	if _, err := e.a.UpdateLocal(context.Background()); !errors.Is(err, ErrNothingToDo) {
		t.Errorf("UpdateLocal with an empty cache = %v, want ErrNothingToDo", err)
	}
}

func TestLock(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	unlock, err := e.a.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	other := *e.a
	other.LockWait = 50 * time.Millisecond
	data, sig := pack(t, publisher, manifest(1))
	if _, err := other.Apply(context.Background(), data, sig); !errors.Is(err, ErrLocked) {
		t.Errorf("Apply while locked = %v, want ErrLocked", err)
	}
	if n := e.k.Loads(); n != 0 {
		t.Errorf("%d modules loaded while locked, want none", n)
	}
}

// TestInterruptReversed: an interrupt (SIGINT, SIGTERM: the context ends)
// while a transition is pending still reverses it to the end: the new
// patch disabled, its module removed, the old level in effect.
func TestInterruptReversed(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	e.apply(t, 2)
	e.k.StallTransitions(true)
	e.a.Config.TransitionTimeout = time.Minute
	data, sig := pack(t, publisher, manifest(3))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	loads := e.k.Loads()
	go func() {
		_, err := e.a.Apply(ctx, data, sig)
		done <- err
	}()
	for i := 0; e.k.Loads() == loads; i++ {
		if i == 1000 {
			t.Fatal("waited 10s for level 3 to be loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply interrupted = %v, want context.Canceled", err)
	}
	if mods := e.k.Modules(); len(mods) != 1 || mods[0] != "kcare_test_l2" {
		t.Errorf("modules after the interrupt = %v, want [kcare_test_l2]", mods)
	}
	if got := e.info(t); got.State != "applied" || got.Level != 2 {
		t.Errorf("after the interrupt: state %q level %d, want applied 2", got.State, got.Level)
	}
}
