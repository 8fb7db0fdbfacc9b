package cli

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kmod"
)

// reboot starts a fresh fake kernel on the same /var and /etc, as a
// reboot (or a power cut and a boot) leaves them.
func (e *env) reboot(t *testing.T) {
	t.Helper()
	e.k.Close()
	for _, d := range []string{"sys", "proc"} {
		if err := os.RemoveAll(filepath.Join(e.root, d)); err != nil {
			t.Fatal(err)
		}
	}
	k, err := fakekernel.New(e.root, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	e.k = k
	newLoader = func() kmod.Loader { return k }
}

// bootApply runs what kcare-boot apply runs at boot: kcarectl --update
// with UPDATE_POLICY=LOCAL.
func (e *env) bootApply(t *testing.T) (stdout, stderr string, code int) {
	t.Helper()
	conf := "/etc/sysconfig/kcare/kcare-boot.conf"
	if err := os.WriteFile(filepath.Join(e.root, conf), []byte("UPDATE_POLICY=LOCAL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return e.run("--config", conf, "--update")
}

// cachedPath is where the record says level 2's bundle is cached.
func (e *env) cachedL2() string {
	return filepath.Join(e.root, "var/cache/kcare", fakekernel.BuildID, "level-2.kcp")
}

// TestBootApplyClockBehind: the boot-time re-apply loads the recorded
// bundle whatever this host's clock says, here a year behind the
// publisher's (the cached signature dated a year ahead); the same bytes
// offered afresh, as by --apply, are refused as signed in the future.
func TestBootApplyClockBehind(t *testing.T) {
	e := newEnv(t)
	l2 := filepath.Join(e.dir, "l2.kcp")
	if _, stderr, code := e.run("--apply", l2); code != ExitOK {
		t.Fatalf("apply l2: exit %d: %s", code, stderr)
	}
	data := mustRead(t, l2)
	ahead, err := publisher.WithClock(func() time.Time { return time.Now().Add(365 * 24 * time.Hour) }).Sign(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.cachedL2()+".sig", ahead, 0o644); err != nil {
		t.Fatal(err)
	}
	e.reboot(t)
	if _, stderr, code := e.bootApply(t); code != ExitOK {
		t.Fatalf("boot-time apply with this clock a year behind: exit %d: %s", code, stderr)
	}
	if stdout, _, _ := e.run("--info", "--json"); !strings.Contains(stdout, `"module": "kcare_test_l2"`) {
		t.Errorf("after the boot-time apply --info says:\n%s", stdout)
	}

	fresh := filepath.Join(t.TempDir(), "l2.kcp")
	os.WriteFile(fresh, data, 0o644)
	os.WriteFile(fresh+".sig", ahead, 0o644)
	e.run("--unload")
	loads := e.k.Loads()
	_, stderr, code := e.run("--apply", fresh)
	if code != ExitRefused || !strings.Contains(stderr, "made in the future") {
		t.Errorf("--apply of a bundle signed a year ahead: exit %d, %q; want exit 3, made in the future", code, stderr)
	}
	if e.k.Loads() != loads {
		t.Errorf("the bundle signed a year ahead was loaded")
	}
}

// TestCorruptCache: a cached bundle that is truncated, garbage, another
// (validly signed) bundle, or whose signature is garbage is refused by
// the boot-time re-apply with a message saying so, and never loaded; the
// next --update fetches it again and applies it. With the level in
// effect, --update fetches a damaged cache again without touching the
// kernel.
func TestCorruptCache(t *testing.T) {
	corruptions := []struct {
		name string
		do   func(e *env)
		want string
	}{
		{"truncated", func(e *env) {
			b := mustRead(t, e.cachedL2())
			os.WriteFile(e.cachedL2(), b[:len(b)/2], 0o644)
		}, "module digest mismatch: the cached bundle"},
		{"garbage", func(e *env) { os.WriteFile(e.cachedL2(), []byte("garbage\n"), 0o644) }, "module digest mismatch: the cached bundle"},
		{"other_bundle", func(e *env) {
			os.WriteFile(e.cachedL2(), mustRead(t, filepath.Join(e.dir, "l1.kcp")), 0o644)
			os.WriteFile(e.cachedL2()+".sig", mustRead(t, filepath.Join(e.dir, "l1.kcp.sig")), 0o644)
		}, "module digest mismatch: the cached bundle"},
		{"signature_garbage", func(e *env) { os.WriteFile(e.cachedL2()+".sig", []byte("garbage\n"), 0o644) }, "malformed signature"},
		{"missing", func(e *env) { os.Remove(e.cachedL2()) }, "no such file or directory; kcarectl --update fetches it again"},
	}
	for _, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			e, _, publish := portalEnv(t)
			publish(2, time.Now().Add(-time.Hour))
			if _, stderr, code := e.run("--register", "fleet"); code != ExitOK {
				t.Fatalf("--register: exit %d: %s", code, stderr)
			}
			good := mustRead(t, e.cachedL2())

			// In effect: --update fetches the cache again, kernel untouched.
			c.do(e)
			loads := e.k.Loads()
			if _, stderr, code := e.run("--update"); code != ExitOK || !strings.Contains(stderr, "fetching it again") {
				t.Errorf("--update with the cache damaged: exit %d, %q; want it fetched again", code, stderr)
			}
			if e.k.Loads() != loads {
				t.Errorf("--update loaded a module to mend the cache")
			}
			if got := mustRead(t, e.cachedL2()); bundle.Digest(got) != bundle.Digest(good) {
				t.Errorf("the cache was not mended by --update")
			}

			// After a reboot: refused at boot, never loaded, then fetched.
			c.do(e)
			e.reboot(t)
			_, stderr, code := e.bootApply(t)
			if code == ExitOK || !strings.Contains(stderr, c.want) {
				t.Errorf("boot-time apply of a damaged cache: exit %d, %q; want a failure saying %q", code, stderr, c.want)
			}
			if n := e.k.Loads(); n != 0 {
				t.Errorf("%d modules loaded from a damaged cache", n)
			}
			if _, stderr, code := e.run("--update"); code != ExitOK {
				t.Fatalf("--update after the refused boot-time apply: exit %d: %s", code, stderr)
			}
			if stdout, _, _ := e.run("--info", "--json"); !strings.Contains(stdout, `"module": "kcare_test_l2"`) {
				t.Errorf("after --update --info says:\n%s", stdout)
			}
			if got := mustRead(t, e.cachedL2()); bundle.Digest(got) != bundle.Digest(good) {
				t.Errorf("the cache was not fetched again by --update")
			}
		})
	}
}

// TestCorruptState: a state.json that is garbage, truncated or empty is
// set aside (state.json.corrupt) and reported; the record is rebuilt from
// the kernel and the verified cache by --info, or, after a reboot, the
// boot-time re-apply applies the highest verified cached level.
func TestCorruptState(t *testing.T) {
	for _, reboot := range []bool{false, true} {
		for _, c := range []struct{ name, data string }{
			{"garbage", "\x00\x01garbage"},
			{"truncated", `{"manifest": {"name": "6.1.0-56-amd64-2", "lev`},
			{"empty", ""},
		} {
			name := c.name
			if reboot {
				name += "_reboot"
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t)
				for _, l := range []string{"l1.kcp", "l2.kcp"} {
					if _, stderr, code := e.run("--apply", filepath.Join(e.dir, l)); code != ExitOK {
						t.Fatalf("apply %s: exit %d: %s", l, code, stderr)
					}
				}
				state := filepath.Join(e.root, "var/lib/kcare/state.json")
				if err := os.WriteFile(state, []byte(c.data), 0o644); err != nil {
					t.Fatal(err)
				}
				var stderr string
				var code int
				if reboot {
					e.reboot(t)
					_, stderr, code = e.bootApply(t)
				} else {
					_, stderr, code = e.run("--info")
				}
				if code != ExitOK || !strings.Contains(stderr, "state.json is unreadable (") || !strings.Contains(stderr, "; set aside as state.json.corrupt\n") {
					t.Errorf("exit %d, stderr %q; want 0 and the state set aside", code, stderr)
				}
				if b, err := os.ReadFile(state + ".corrupt"); err != nil || string(b) != c.data {
					t.Errorf("state.json.corrupt holds %q, %v; want the corrupt state", b, err)
				}
				stdout, _, _ := e.run("--info", "--json")
				if !strings.Contains(stdout, `"state": "applied"`) || !strings.Contains(stdout, `"module": "kcare_test_l2"`) {
					t.Errorf("--info after the state was set aside:\n%s", stdout)
				}
				if _, err := os.Stat(state); err != nil {
					t.Errorf("no record after recovery: %v", err)
				}
			})
		}
	}
}

// TestCorruptIndexState: an unreadable index.json is set aside and
// reported, and --update goes on.
func TestCorruptIndexState(t *testing.T) {
	e, _, publish := portalEnv(t)
	publish(2, time.Now().Add(-time.Hour))
	if _, stderr, code := e.run("--register", "fleet"); code != ExitOK {
		t.Fatalf("--register: exit %d: %s", code, stderr)
	}
	path := filepath.Join(e.root, "var/lib/kcare/index.json")
	os.WriteFile(path, []byte("{\"version\": 3"), 0o644)
	stdout, stderr, code := e.run("--update")
	if code != ExitOK || !strings.Contains(stderr, "index.json is unreadable (") || !strings.Contains(stdout, "Level 2 is already applied") {
		t.Errorf("--update with index.json corrupt: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := os.Stat(path + ".corrupt"); errors.Is(err, fs.ErrNotExist) {
		t.Errorf("index.json.corrupt missing")
	}
}
