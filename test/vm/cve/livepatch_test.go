package cve_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/cmd/kcare-build/cli"
	"github.com/kcare/kcare/internal/analyze"
	"github.com/kcare/kcare/test/vm/cve"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/guestsyms"
	"github.com/kcare/kcare/test/vm/qemu"
)

// transitionBound is how long a livepatch's transition may take in the guest.
const transitionBound = 30 * time.Second

// moduleName is the livepatch module built for a fix: kcare_cve_2026_93146.
func moduleName(f cve.Fix) string {
	return "kcare_" + strings.ToLower(strings.ReplaceAll(f.CVE.ID, "-", "_"))
}

// TestLivepatches builds each fix's livepatch with kcare-build against the
// vulnerable kernel (its headers and a /proc/kallsyms dump of it), checks
// it against the fix's analysis, and applies it in a guest running that
// kernel, in the kernel selftests' order: the reproducer shows the bug,
// the patch loads and its transition ends, the reproducer shows it fixed,
// the patch is disabled and removed, the reproducer shows the bug again.
// Each step prints one line, "CVE-ID: before=vulnerable" and so on.
func TestLivepatches(t *testing.T) {
	if testing.Short() {
		t.Skip("VM tests do not run with -short")
	}
	if err := qemu.CheckHost(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("VM suite cannot run: %v", err)
		}
		t.Skipf("VM suite cannot run: %v", err)
	}
	fixes, err := cve.Load(filepath.Join("..", "..", "..", "testdata", "cve"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	cache := debkernel.DefaultCacheDir()
	rel := release("KCARE_TEST_VULNERABLE_RELEASE", defaultVulnerable)
	k, err := debkernel.FetchRelease(ctx, cache, rel, t.Logf)
	if err != nil {
		t.Fatalf("the vulnerable kernel %s: %v", rel, err)
	}
	kallsyms, err := guestsyms.Fetch(ctx, cache, k, t.Logf)
	if err != nil {
		t.Fatal(err)
	}

	work := t.TempDir()
	files := map[string]string{}
	for _, f := range fixes {
		bin := filepath.Join(work, "repro-"+f.CVE.ID)
		if err := cve.BuildReproducer(ctx, f, bin); err != nil {
			t.Fatal(err)
		}
		files["/usr/bin/repro-"+f.CVE.ID] = bin
		ko := filepath.Join(work, moduleName(f)+".ko")
		var stdout, stderr bytes.Buffer
		if code := cli.Run(ctx, []string{"module", "--headers", k.HeadersDir, "--src", f.Livepatch(),
			"--kallsyms", kallsyms, "--out", ko, "-v"}, &stdout, &stderr); code != 0 {
			t.Fatalf("kcare-build module %s: exit %d\n%s", f.CVE.ID, code, stderr.String())
		}
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.HasPrefix(l, "klp: ") {
				t.Logf("%s: %s", f.CVE.ID, l)
			}
		}
		checkAnalysis(t, f, ko, k.Release)
		files["/lib/kcare/"+moduleName(f)+".ko"] = ko
	}

	initrd := filepath.Join(work, "initrd.cpio")
	if err := qemu.BuildInitramfs(ctx, qemu.Image{Kernel: k, Files: files}, initrd); err != nil {
		t.Fatal(err)
	}
	vm, err := qemu.Start(ctx, qemu.Config{Kernel: k.Vmlinux, Initrd: initrd, Isolated: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	t.Logf("booted %s (%s) in %v", k.Release, k.Version, vm.BootTime().Round(time.Millisecond))
	sh := func(script string) string {
		t.Helper()
		r, err := vm.Run(ctx, "/bin/sh", "-c", script)
		if err != nil || r.Exit != 0 {
			t.Fatalf("guest: %s: %v exit %d\n%s", script, err, r.Exit, r.Stderr)
		}
		return r.Stdout
	}
	sh("dmesg -c >/dev/null")

	for _, f := range fixes {
		t.Run(f.CVE.ID, func(t *testing.T) {
			name := moduleName(f)
			sys := "/sys/kernel/livepatch/" + name
			step := func(step, want string) {
				t.Helper()
				r, err := vm.Run(ctx, "/usr/bin/repro-"+f.CVE.ID)
				if err != nil {
					t.Fatal(err)
				}
				line := fmt.Sprintf("%s: %s=%s", f.CVE.ID, step, strings.TrimSpace(r.Stdout))
				fmt.Println(line)
				if r.Stdout != want+"\n" {
					t.Errorf("%s; want %s=%s (exit %d, stderr %q)", line, step, want, r.Exit, r.Stderr)
				}
			}
			waitFor := func(what, script string) {
				t.Helper()
				deadline := time.Now().Add(transitionBound)
				for {
					r, err := vm.Run(ctx, "/bin/sh", "-c", script)
					if err == nil && r.Exit == 0 {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("waited %s for %s of %s", transitionBound, what, name)
					}
					time.Sleep(200 * time.Millisecond)
				}
			}

			step("before", "vulnerable")
			sh("insmod /lib/kcare/" + name + ".ko")
			waitFor("the patching transition", "test \"$(cat "+sys+"/enabled "+sys+"/transition)\" = \"$(printf '1\\n0')\"")
			step("after", "fixed")
			sh("echo 0 > " + sys + "/enabled")
			waitFor("the unpatching transition", "test ! -e "+sys)
			sh("rmmod " + name)
			step("unload", "vulnerable")

			log := strings.TrimSpace(sh("dmesg -c | grep 'livepatch:' | sed 's/^\\[[ 0-9.]*\\] //'; true"))
			for _, l := range strings.Split(log, "\n") {
				fmt.Println(l)
			}
			want := []string{
				"livepatch: enabling patch '" + name + "'",
				"livepatch: '" + name + "': starting patching transition",
				"livepatch: '" + name + "': patching complete",
				"livepatch: '" + name + "': starting unpatching transition",
				"livepatch: '" + name + "': unpatching complete",
			}
			i := 0
			for _, l := range strings.Split(log, "\n") {
				if i < len(want) && l == want[i] {
					i++
				}
			}
			if i < len(want) {
				t.Errorf("kernel log:\n%s\nlacks, in order, %q", log, want[i:])
			}
		})
	}
}

// checkAnalysis checks the built livepatch against the fix's analysis of
// the vulnerable kernel: it must replace every function listed.
func checkAnalysis(t *testing.T, f cve.Fix, ko, release string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.Dir, "analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := analyze.ReadAnalysis(data)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(ko)
	if err != nil {
		t.Fatal(err)
	}
	if a.Kernel.Release != release {
		t.Fatalf("%s/analysis.json is for %s; the test kernel is %s", f.Dir, a.Kernel.Release, release)
	}
	if err := analyze.Check(a, mod, release); err != nil {
		t.Errorf("%s: %v", f.CVE.ID, err)
	}
}
