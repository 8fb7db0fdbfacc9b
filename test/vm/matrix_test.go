package vm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	buildcli "github.com/kcare/kcare/cmd/kcare-build/cli"
	"github.com/kcare/kcare/internal/debian"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

// matrixKernels picks the kernels TestMatrix builds for: the two newest of
// bookworm's 6.1 and 6.12 families, and trixie's newest.
func matrixKernels(t *testing.T, ctx context.Context) []string {
	t.Helper()
	c, err := debkernel.Catalog(ctx, debkernel.DefaultCacheDir(), t.Logf)
	if err != nil {
		ciFatal(t, "list the kernels the archive serves: %v", err)
	}
	var out []string
	for _, want := range []struct {
		family string
		n      int
	}{{"bookworm-6.1", 2}, {"bookworm-6.12", 2}, {"trixie-6.12", 1}} {
		sets := c.Family(want.family)
		if len(sets) < want.n {
			ciFatal(t, "the archive serves %d complete %s kernels; the matrix needs %d", len(sets), want.family, want.n)
		}
		for _, s := range sets[len(sets)-want.n:] {
			out = append(out, s.Release)
		}
	}
	return out
}

// matrixResult is the part of kcare-build matrix --json the test reads.
type matrixResult struct {
	Kernels []struct {
		Release, Family, Result, Error, Bundle, Toolchain string
		Step                                              string `json:"failed_step"`
		Seconds                                           map[string]float64
	}
}

func runMatrix(t *testing.T, ctx context.Context, args ...string) (matrixResult, int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := buildcli.Run(ctx, append([]string{"matrix", "--json", "--cache", debkernel.DefaultCacheDir()}, args...), &stdout, &stderr)
	var r matrixResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("kcare-build matrix: exit %d, stdout not JSON (%v)\n%s\n%s", code, err, stdout.String(), stderr.String())
	}
	return r, code, stderr.String()
}

// TestMatrix builds the fixture source for five kernels of three families
// with one kcare-build matrix command (each level tested in its own
// kernel in QEMU, then published), with a release the archive does not
// serve among them, which fails alone. A level that stalls fails
// kcare-build test and is not published. Then each of the five kernels
// boots: it refuses the bundle of every other kernel of the matrix, and
// gets its own level from the portal all five were published to.
func TestMatrix(t *testing.T) {
	shared := requireVM(t)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	releases := matrixKernels(t, ctx)
	p := newHostPortal(t, shared)
	t.Setenv("KCARE_PUBLISH_TOKEN", p.Token)
	key := p.eportal("", "key", "add", "--note", "matrix")
	work := t.TempDir()
	out := filepath.Join(work, "out")
	list := "# the matrix of TestMatrix\n" + strings.Join(releases, "\n") + "\n6.1.0-1-amd64\n"
	if err := os.WriteFile(filepath.Join(work, "kernels"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	check := filepath.Join(work, "check")
	// The check leaves a mark where it ran: kcare-build test's guest, never
	// a server the agent applies the level on.
	if err := os.WriteFile(check, []byte("#!/bin/sh\ntouch /tmp/kcare-check-ran\ngrep -q 'kcare-fixture level 2' /proc/cmdline\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(fixture.RepoRoot(), "testdata", "livepatch", "fixture")
	released := "2026-11-20T09:00:00Z"

	t.Run("build", func(t *testing.T) {
		r, code, stderr := runMatrix(t, ctx, "--src", src, "--define", "KCARE_LEVEL=2", "--name", "kcare_matrix", "--level", "1",
			"--kernels", filepath.Join(work, "kernels"), "--sign-key", shared.Path("publisher.key"), "--out", out,
			"--check", check, "--test", "--portal", p.URL(), "--released", released)
		t.Logf("kcare-build matrix:\n%s", stderr)
		if code != buildcli.ExitError {
			t.Errorf("exit %d; want %d (one kernel failed)", code, buildcli.ExitError)
		}
		var got []string
		for _, k := range r.Kernels {
			got = append(got, k.Release+" "+k.Result)
			t.Logf("%s (%s): %s, fetch %.1fs, build root %.1fs, build %.1fs, test %.1fs, %s", k.Release, k.Family, k.Result,
				k.Seconds["fetch"], k.Seconds["buildroot"], k.Seconds["build"], k.Seconds["test"], k.Toolchain)
		}
		var want []string
		for _, r := range releases {
			want = append(want, r+" published")
		}
		want = append(want, "6.1.0-1-amd64 failed")
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("matrix results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if last := r.Kernels[len(r.Kernels)-1]; last.Step != "fetch" || !strings.Contains(last.Error, "linux-image-6.1.0-1-amd64-unsigned: not served by the archive") {
			t.Errorf("the unserved kernel failed at %s: %s; want fetch: not served", last.Step, last.Error)
		}
		if levels := portalLevels(t, p); len(levels) != len(releases) {
			t.Errorf("the portal holds %d levels: %q; want the %d the matrix published", len(levels), levels, len(releases))
		}
	})

	t.Run("kcare_build_test", func(t *testing.T) {
		// A good level, its check passing only with the level applied.
		rel := releases[len(releases)-1]
		var stdout, stderr bytes.Buffer
		code := buildcli.Run(ctx, []string{"test", "--keyring", shared.Path("publisher.pub"), "--cache", debkernel.DefaultCacheDir(),
			filepath.Join(out, rel+"-1.kcp")}, &stdout, &stderr)
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		want := []string{"booted " + rel + " (TCG)", "check before: exit 1", "check after: exit 0", "unload: done", "check after unload: exit 1", "PASS"}
		if code != 0 || !containsInOrder(lines, want) {
			t.Errorf("kcare-build test of a good level: exit %d\n%s%s\nwant, in order: %q", code, stdout.String(), stderr.String(), want)
		}
		// The same module with a check that fails.
		bad := filepath.Join(work, "bad-check")
		os.WriteFile(bad, []byte("#!/bin/sh\necho still vulnerable\nexit 1\n"), 0o755)
		k, err := debkernel.FetchRelease(ctx, debkernel.DefaultCacheDir(), rel, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		kcp := filepath.Join(work, "bad-check.kcp")
		if code := buildcli.Run(ctx, []string{"pack", "--module", filepath.Join(out, rel, "kcare_matrix.ko"), "--kernel", k.Vmlinuz,
			"--level", "1", "--sign-key", shared.Path("publisher.key"), "--check", bad, "--out", kcp}, io.Discard, &stderr); code != 0 {
			t.Fatalf("pack: exit %d: %s", code, stderr.String())
		}
		stdout.Reset()
		stderr.Reset()
		code = buildcli.Run(ctx, []string{"test", "--keyring", shared.Path("publisher.pub"), "--cache", debkernel.DefaultCacheDir(), kcp}, &stdout, &stderr)
		lines = strings.Split(strings.TrimSpace(stdout.String()), "\n")
		want = []string{"check after: exit 1", "  | still vulnerable", "FAIL: the check exited 1 with the level applied"}
		if code != buildcli.ExitTestFailed || !containsInOrder(lines, want) {
			t.Errorf("kcare-build test of a level whose check fails: exit %d\n%s%s\nwant exit %d and, in order: %q", code, stdout.String(), stderr.String(), buildcli.ExitTestFailed, want)
		}
	})

	t.Run("stalled_level_unpublished", func(t *testing.T) {
		r, code, _ := runMatrix(t, ctx, "--src", src, "--define", "KCARE_LEVEL=1", "--define", "KCARE_STALL_KTHREADD",
			"--name", "kcare_stall", "--level", "2", "--kernels", releases[1], "--sign-key", shared.Path("publisher.key"),
			"--out", filepath.Join(work, "stall"), "--test", "--transition-timeout", "5s", "--portal", p.URL(), "--released", released)
		if code != buildcli.ExitError || len(r.Kernels) != 1 || r.Kernels[0].Result != "failed" || r.Kernels[0].Step != "test" ||
			!strings.Contains(r.Kernels[0].Error, "the transition did not finish within 5s (tasks not switched: kthreadd[2])") {
			t.Errorf("matrix of a stalling level: exit %d, %+v; want failed at test, kthreadd not switched", code, r.Kernels)
		}
		for _, l := range portalLevels(t, p) {
			if strings.HasSuffix(l, " level 2") {
				t.Errorf("the portal holds %s: the stalled level was published", l)
			}
		}
	})

	for _, rel := range releases {
		t.Run(rel, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, familyTimeout)
			defer cancel()
			k, err := debkernel.FetchRelease(ctx, debkernel.DefaultCacheDir(), rel, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			g := bootPlain(t, ctx, shared, k, p, out)
			t.Logf("booted %s (%s, %s) in %s", rel, k.Version, k.Family(), g.vm.BootTime().Round(time.Millisecond))
			if got := strings.TrimSpace(g.ok("uname -r")); got != rel {
				t.Fatalf("the guest runs %q; want %s", got, rel)
			}

			t.Run("refuses_the_others", func(t *testing.T) {
				g.t = t
				for _, other := range releases {
					if other == rel {
						continue
					}
					r := g.kcarectl(fmt.Sprintf("--apply /mnt/matrix/%s-1.kcp", other))
					if r.Exit != 3 || !strings.Contains(r.Stderr, "bundle is for another kernel") {
						t.Errorf("%s applying the level for %s: exit %d, stderr %q; want exit 3, bundle is for another kernel", rel, other, r.Exit, r.Stderr)
					}
				}
				g.wantModules("", "")
			})

			t.Run("own_level_from_portal", func(t *testing.T) {
				g.t = t
				g.ok(fmt.Sprintf("printf 'PATCH_SERVER=%s\\n' > /etc/sysconfig/kcare/kcare.conf", p.GuestURL()))
				if r := g.kcarectl("--register " + key); r.Exit != 0 {
					t.Fatalf("kcarectl --register: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
				}
				if got := g.cmdline(); got != cmdlineL2 {
					t.Errorf("/proc/cmdline = %q, want the matrix level's %q", got, cmdlineL2)
				}
				g.wantModules("kcare_matrix", "kcare_matrix")
				// The bundle carries a check; the agent never runs it.
				if r := g.sh("test -e /tmp/kcare-check-ran"); r.Exit == 0 {
					t.Error("the agent ran the check the bundle carries")
				}
				if got := strings.TrimSpace(g.ok("find /var/lib/kcare /var/cache/kcare /tmp -type f -perm -u+x | sort")); got != "" {
					t.Errorf("executable files after the update: %q; want none", got)
				}
				if info := g.info(); info.State != "applied" || info.Level != 1 || info.Module != "kcare_matrix" || info.Kernel.Release != rel {
					t.Errorf("info = %+v; want the matrix's level 1 applied on %s", info, rel)
				}
				if r := g.kcarectl("--unload"); r.Exit != 0 {
					t.Errorf("kcarectl --unload: exit %d: %s", r.Exit, r.Stderr)
				}
			})
		})
	}

	// The portal saw each kernel take its own level (kcarectl --unload
	// is the server's own business and is not reported).
	var got []string
	for _, s := range p.servers() {
		got = append(got, fmt.Sprintf("%v level %v", s["release"], s["patch_level"]))
	}
	sort.Strings(got)
	var want []string
	for _, r := range releases {
		want = append(want, r+" level 1")
	}
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the portal's servers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// containsInOrder reports whether want appear among lines, in order.
func containsInOrder(lines, want []string) bool {
	i := 0
	for _, l := range lines {
		if i < len(want) && l == want[i] {
			i++
		}
	}
	return i == len(want)
}

// portalLevels lists the levels a portal holds: "RELEASE level N".
func portalLevels(t *testing.T, p *hostPortal) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", p.URL()+"/api/v1/mirror/levels", nil)
	req.Header.Set("X-Api-Key", p.Token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	var out struct {
		Levels []struct {
			Release string `json:"release"`
			Level   int    `json:"level"`
		} `json:"levels"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil {
		t.Fatalf("GET /api/v1/mirror/levels: %s\n%s", resp.Status, body)
	}
	var levels []string
	for _, l := range out.Levels {
		levels = append(levels, fmt.Sprintf("%s level %d", l.Release, l.Level))
	}
	return levels
}

// bootPlain boots kernel k with kcarectl, the publisher's and the portal's
// keys, and the matrix's bundles shared at /mnt/matrix.
func bootPlain(t *testing.T, ctx context.Context, shared *fixture.Fixture, k *debian.Kernel, p *hostPortal, bundles string) *guest {
	t.Helper()
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	if err := qemu.BuildInitramfs(ctx, qemu.Image{Kernel: k, Files: map[string]string{
		"/usr/bin/kcarectl":                       shared.Path("kcarectl"),
		"/etc/sysconfig/kcare/keys/publisher.pub": shared.Path("publisher.pub"),
		"/etc/sysconfig/kcare/keys/portal.pub":    filepath.Join(p.Data, "portal.pub"),
	}, Modules: []string{"9p", "9pnet_virtio"}}, initrd); err != nil {
		t.Fatal(err)
	}
	vm, err := qemu.Start(ctx, qemu.Config{Kernel: k.Vmlinux, Initrd: initrd,
		Shares: []qemu.Share{{Tag: "matrix", HostDir: bundles, GuestPath: "/mnt/matrix"}}})
	if err != nil {
		t.Fatalf("boot %s: %v", k.Release, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console:\n%s", tail(vm.Console(), 60))
		}
		vm.Stop()
	})
	return &guest{t: t, vm: vm, ctx: ctx}
}
