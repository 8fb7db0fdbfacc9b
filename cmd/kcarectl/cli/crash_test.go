//go:build faults

package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/faultpoint"
)

// errKilled is what the fault handler panics with: the run stops at its
// point as if killed there, and runs nothing more of its own.
var errKilled = errors.New("killed at a fault point")

// runStopped runs kcarectl and stops it at point, as a kill -9 or a power
// cut there would; it fails the test if the run never reached the point.
func (e *env) runStopped(t *testing.T, point string, args ...string) {
	t.Helper()
	restore := faultpoint.Handle(func(p string) {
		if p == point {
			panic(errKilled)
		}
	})
	defer restore()
	reached := false
	func() {
		defer func() {
			if r := recover(); r != nil {
				if r != errKilled {
					panic(r)
				}
				reached = true
			}
		}()
		e.run(args...)
	}()
	if !reached {
		t.Fatalf("kcarectl %s never reached the fault point %s", strings.Join(args, " "), point)
	}
}

// kernelState is what the kernel has: the kcare patches enabled in
// /sys/kernel/livepatch and the kcare modules loaded.
func (e *env) kernelState(t *testing.T) (enabled, modules []string) {
	t.Helper()
	dir := filepath.Join(e.root, "sys/kernel/livepatch")
	ents, _ := os.ReadDir(dir)
	for _, d := range ents {
		b, err := os.ReadFile(filepath.Join(dir, d.Name(), "enabled"))
		if err == nil && strings.TrimSpace(string(b)) == "1" {
			enabled = append(enabled, d.Name())
		}
	}
	return enabled, e.k.Modules()
}

// recorded is the module the record (state.json) names, "" for none.
func (e *env) recorded(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, "var/lib/kcare/state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Manifest struct {
			Module struct{ Name string } `json:"module"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state.json unreadable: %v\n%s", err, b)
	}
	return st.Manifest.Module.Name
}

// leftovers lists the files an interrupted write or operation left in
// kcarectl's directories: temporary files and an operation's journal.
func (e *env) leftovers(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, d := range []string{"var/lib/kcare", "var/cache/kcare"} {
		filepath.WalkDir(filepath.Join(e.root, d), func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			name := de.Name()
			if strings.Contains(name, ".tmp-") || name == "pending.json" || name == "unloading" {
				rel, _ := filepath.Rel(e.root, p)
				out = append(out, rel)
			}
			return nil
		})
	}
	return out
}

// agree checks that the kernel and the record agree: the patch in effect
// is the one recorded (want, "" for none), no kcare module is loaded
// without its patch, and no half-written file is left.
func (e *env) agree(t *testing.T, when, want string) {
	t.Helper()
	enabled, modules := e.kernelState(t)
	rec := e.recorded(t)
	inEffect := strings.Join(enabled, " ")
	if inEffect != want || (want != "" && rec != want) {
		t.Errorf("%s: kernel has %q in effect, the record names %q; want %q in both", when, inEffect, rec, want)
	}
	var orphans []string
	for _, m := range modules {
		if _, err := os.Stat(filepath.Join(e.root, "sys/kernel/livepatch", m)); err != nil {
			orphans = append(orphans, m)
		}
	}
	if len(orphans) > 0 {
		t.Errorf("%s: modules loaded without a patch: %v", when, orphans)
	}
	if l := e.leftovers(t); len(l) > 0 {
		t.Errorf("%s: files left half-written or pending: %v", when, l)
	}
}

// wantInfo checks that kcarectl --info succeeds and reports module as
// applied ("" for none).
func (e *env) wantInfo(t *testing.T, when, module string) {
	t.Helper()
	stdout, stderr, code := e.run("--info", "--json")
	if code != ExitOK {
		t.Fatalf("%s: kcarectl --info: exit %d\n%s", when, code, stderr)
	}
	var info struct {
		State  string `json:"state"`
		Module string `json:"module"`
	}
	if err := json.Unmarshal([]byte(stdout), &info); err != nil {
		t.Fatalf("%s: kcarectl --info --json: %v\n%s", when, err, stdout)
	}
	if info.Module != module || (module != "") != (info.State == "applied") {
		t.Errorf("%s: kcarectl --info says %s %q, want module %q applied", when, info.State, info.Module, module)
	}
}

// TestKilledMidApply stops kcarectl --apply of level 2 over level 1 at
// each point of the apply, as kill -9 would, and then runs what comes
// next on the same kernel: kcarectl --info, the apply again, a reboot and
// the boot-time re-apply. After each, the kernel and the record agree.
func TestKilledMidApply(t *testing.T) {
	for _, point := range []string{faultpoint.AfterVerify, faultpoint.CacheWrite, faultpoint.AfterLoad,
		faultpoint.AfterRecord, faultpoint.RemoveReplaced} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t)
			l1, l2 := filepath.Join(e.dir, "l1.kcp"), filepath.Join(e.dir, "l2.kcp")
			if _, stderr, code := e.run("--apply", l1); code != ExitOK {
				t.Fatalf("apply l1: exit %d: %s", code, stderr)
			}
			e.runStopped(t, point, "--apply", l2)

			e.wantInfo(t, "kcarectl --info after the kill", e.recordedAfterInfo(t))
			e.agree(t, "after kcarectl --info", e.recorded(t))
			if _, stderr, code := e.run("--apply", l2); code != ExitOK {
				t.Fatalf("apply l2 after the kill: exit %d: %s", code, stderr)
			}
			e.agree(t, "after the apply again", "kcare_test_l2")
			e.reboot(t)
			if _, stderr, code := e.bootApply(t); code != ExitOK {
				t.Fatalf("boot-time apply: exit %d: %s", code, stderr)
			}
			e.agree(t, "after the boot-time apply", "kcare_test_l2")
			e.wantInfo(t, "kcarectl --info after the boot", "kcare_test_l2")
		})
	}
}

// recordedAfterInfo runs nothing: it is what --info must show, the
// module in effect, which the record must then name too.
func (e *env) recordedAfterInfo(t *testing.T) string {
	t.Helper()
	enabled, _ := e.kernelState(t)
	if len(enabled) != 1 {
		t.Fatalf("kernel has %d kcare patches enabled, want one: %v", len(enabled), enabled)
	}
	return enabled[0]
}

// TestPowerCutMidApply stops kcarectl --apply of level 2 over level 1 at
// each point, then reboots at once, as a power cut there would: the
// boot-time re-apply, --info and --apply agree with the record.
func TestPowerCutMidApply(t *testing.T) {
	for _, point := range []string{faultpoint.AfterVerify, faultpoint.CacheWrite, faultpoint.AfterLoad,
		faultpoint.AfterRecord, faultpoint.RemoveReplaced} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t)
			l1, l2 := filepath.Join(e.dir, "l1.kcp"), filepath.Join(e.dir, "l2.kcp")
			if _, stderr, code := e.run("--apply", l1); code != ExitOK {
				t.Fatalf("apply l1: exit %d: %s", code, stderr)
			}
			e.runStopped(t, point, "--apply", l2)
			want := e.recorded(t)
			e.reboot(t)
			if _, stderr, code := e.bootApply(t); code != ExitOK {
				t.Fatalf("boot-time apply: exit %d: %s", code, stderr)
			}
			e.agree(t, "after the boot-time apply", want)
			e.wantInfo(t, "kcarectl --info after the boot", want)
			if _, stderr, code := e.run("--apply", l2); code != ExitOK {
				t.Fatalf("apply l2 after the boot: exit %d: %s", code, stderr)
			}
			e.agree(t, "after the apply again", "kcare_test_l2")
		})
	}
}

// TestKilledInTransition stops kcarectl in its wait for a transition that
// a sleeping task holds up. The next kcarectl --info waits for it as the
// stopped one would have, reverses it, and level 2 stays in effect and
// recorded; after a power cut there, the boot re-applies level 2.
func TestKilledInTransition(t *testing.T) {
	for _, reboot := range []bool{false, true} {
		t.Run(fmt.Sprintf("reboot=%v", reboot), func(t *testing.T) {
			e := newEnv(t)
			e.pack(t, 3)
			if _, stderr, code := e.run("--apply", filepath.Join(e.dir, "l2.kcp")); code != ExitOK {
				t.Fatalf("apply l2: exit %d: %s", code, stderr)
			}
			e.k.StallTransitions(true)
			e.runStopped(t, faultpoint.TransitionWait, "--apply", filepath.Join(e.dir, "l3.kcp"), "--transition-timeout", "100ms")
			if reboot {
				e.reboot(t)
				if _, stderr, code := e.bootApply(t); code != ExitOK {
					t.Fatalf("boot-time apply: exit %d: %s", code, stderr)
				}
			} else {
				os.WriteFile(filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf"), []byte("TRANSITION_TIMEOUT=100ms\n"), 0o644)
				_, stderr, _ := e.run("--info")
				if !strings.Contains(stderr, "kcare_test_l3") {
					t.Errorf("kcarectl --info says nothing of the transition of kcare_test_l3 it reversed: %q", stderr)
				}
			}
			e.agree(t, "after the next kcarectl", "kcare_test_l2")
			e.wantInfo(t, "kcarectl --info", "kcare_test_l2")
		})
	}
}

// TestKilledMidUnload stops kcarectl --unload with the patch disabled and
// gone and its module not yet removed: the next kcarectl --info finishes
// the unload; after a power cut there, the boot-time apply re-applies the
// cached level as after any unload, and the record says so.
func TestKilledMidUnload(t *testing.T) {
	for _, reboot := range []bool{false, true} {
		t.Run(fmt.Sprintf("reboot=%v", reboot), func(t *testing.T) {
			e := newEnv(t)
			if _, stderr, code := e.run("--apply", filepath.Join(e.dir, "l2.kcp")); code != ExitOK {
				t.Fatalf("apply l2: exit %d: %s", code, stderr)
			}
			e.runStopped(t, faultpoint.Unload, "--unload")
			want := ""
			if reboot {
				e.reboot(t)
				if _, stderr, code := e.bootApply(t); code != ExitOK {
					t.Fatalf("boot-time apply: exit %d: %s", code, stderr)
				}
				want = "kcare_test_l2"
			} else if _, stderr, code := e.run("--info"); code != ExitOK {
				t.Fatalf("kcarectl --info: exit %d: %s", code, stderr)
			}
			e.agree(t, "after the next kcarectl", want)
			if want == "" && e.recorded(t) != "" {
				t.Errorf("the record still names %s after the unload was finished", e.recorded(t))
			}
			e.wantInfo(t, "kcarectl --info", want)
		})
	}
}
