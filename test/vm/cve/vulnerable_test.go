package cve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openvex/go-vex/pkg/vex"

	buildcli "github.com/kcare/kcare/cmd/kcare-build/cli"
	"github.com/kcare/kcare/test/vm/cve"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/guestsyms"
	"github.com/kcare/kcare/test/vm/qemu"
)

// transitionBound is how long a livepatch's transition may take in the guest.
const transitionBound = 30 * time.Second

// TestVulnerableKernel proves the real fixes on the oldest kernel the
// archive serves that carries every bug, in one guest:
//
//   - reproducers: each reproducer says "vulnerable";
//   - standalone: each fix's own livepatch, built with kcare-build module
//     --kallsyms --check-against its analysis, loaded with insmod, fixes
//     its bug, and the bug is back once it is disabled and removed;
//   - portal: the fixes as cumulative levels (level 1 the first fix,
//     level 2 the first two, level 3 all three: one livepatch module each,
//     replace = true), signed and published to eportal one after the
//     other, reach the guest with kcarectl --update; kcarectl --patch-info,
//     kcarectl --vex and the portal's VEX document of the server list the
//     CVEs; kcarectl --unload brings the bugs back. Each step prints one
//     line, "CVE-ID: before=vulnerable", "CVE-ID: after=fixed",
//     "CVE-ID: unload=vulnerable", then the kernel's livepatch log.
func TestVulnerableKernel(t *testing.T) {
	fixes := requireVM(t)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	cache := debkernel.DefaultCacheDir()
	k := kernelFor(t, ctx, fixes, "KCARE_TEST_VULNERABLE_RELEASE", cve.VulnerableKernel)
	kallsyms, err := guestsyms.Fetch(ctx, cache, k, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	analyses, err := cve.Analyses(ctx, fixes, k, cache, work, t.Logf)
	if err != nil {
		t.Fatal(err)
	}

	tools := &fixture.Fixture{Kernel: k, Dir: filepath.Join(work, "tools")}
	if err := fixture.BuildTools(ctx, tools.Dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"/usr/bin/kcarectl":                       tools.Path("kcarectl"),
		"/etc/sysconfig/kcare/keys/publisher.pub": tools.Path("publisher.pub"),
	}
	for i, f := range fixes {
		bin := filepath.Join(work, "repro-"+f.CVE.ID)
		if err := cve.BuildReproducer(ctx, f, bin); err != nil {
			t.Fatal(err)
		}
		files["/usr/bin/repro-"+f.CVE.ID] = bin
		ko := filepath.Join(work, f.ModuleName()+".ko")
		if _, err := kcareBuild(ctx, "module", "--headers", k.HeadersDir, "--src", f.Livepatch(),
			"--kallsyms", kallsyms, "--check-against", analyses[i], "--out", ko); err != nil {
			t.Fatal(err)
		}
		files["/lib/kcare/"+f.ModuleName()+".ko"] = ko
	}
	// Level n carries fixes 1..n; their release times are fixed, past
	// and in order, so the portal serves each as soon as it is published.
	// The last level is built as a patch team ships a fix to every
	// vulnerable kernel: with kcare-build matrix, tested in its own
	// kernel with kcare-build test (the last fix's reproducer as its
	// check), here for the one kernel.
	released := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	var levels []string
	for n := 1; n < len(fixes); n++ {
		kcp, err := cve.BuildLevel(ctx, cve.Level{Kernel: k, Kallsyms: kallsyms, Fixes: fixes[:n], Analyses: analyses[:n],
			N: n, SignKey: tools.Path("publisher.key"), Dir: work, Released: released.Add(time.Duration(n) * time.Hour), Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		levels = append(levels, kcp)
	}
	levels = append(levels, matrixLevel(t, ctx, k, fixes, analyses, tools.Path("publisher.key"), files["/usr/bin/repro-"+fixes[len(fixes)-1].CVE.ID],
		filepath.Join(work, "matrix"), released.Add(time.Duration(len(fixes))*time.Hour)))

	p, err := tools.NewPortal(filepath.Join(work, "eportal"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("eportal log:\n%s", p.Log())
		}
	})
	key, err := p.Eportal("", "key", "add", "--note", "vulnerable kernel")
	if err != nil {
		t.Fatal(err)
	}
	files["/etc/sysconfig/kcare/keys/portal.pub"] = filepath.Join(p.Data, "portal.pub")

	initrd := filepath.Join(work, "initrd.cpio")
	if err := qemu.BuildInitramfs(ctx, qemu.Image{Kernel: k, Files: files}, initrd); err != nil {
		t.Fatal(err)
	}
	vm, err := qemu.Start(ctx, qemu.Config{Kernel: k.Vmlinux, Initrd: initrd})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	t.Logf("booted %s (%s) in %v", k.Release, k.Version, vm.BootTime().Round(time.Millisecond))
	g := &guest{t: t, vm: vm, ctx: ctx}
	g.klpLog()

	t.Run("reproducers", func(t *testing.T) {
		g.t = t
		for _, f := range fixes {
			got, exit := g.repro(f)
			t.Logf("%s on %s: %s, exit %d", f.CVE.ID, k.Release, got, exit)
			if got != "vulnerable" || exit != cve.ExitVulnerable {
				t.Errorf("%s on %s: %q exit %d; want vulnerable exit %d", f.CVE.ID, k.Release, got, exit, cve.ExitVulnerable)
			}
		}
	})

	for _, f := range fixes {
		t.Run("standalone/"+f.CVE.ID, func(t *testing.T) {
			g.t = t
			name := f.ModuleName()
			sys := "/sys/kernel/livepatch/" + name
			check := func(step, want string) {
				t.Helper()
				if got, exit := g.repro(f); got != want {
					t.Errorf("%s with its own livepatch, %s: %s (exit %d); want %s", f.CVE.ID, step, got, exit, want)
				}
			}
			g.ok("insmod /lib/kcare/" + name + ".ko")
			g.waitFor("the patching transition of "+name, "test \"$(cat "+sys+"/enabled "+sys+"/transition)\" = \"$(printf '1\\n0')\"", transitionBound)
			check("loaded", "fixed")
			g.ok("echo 0 > " + sys + "/enabled")
			g.waitFor("the unpatching transition of "+name, "test ! -e "+sys, transitionBound)
			g.ok("rmmod " + name)
			check("removed", "vulnerable")
			wantLog(t, g.klpLog(),
				"livepatch: enabling patch '"+name+"'",
				"livepatch: '"+name+"': starting patching transition",
				"livepatch: '"+name+"': patching complete",
				"livepatch: '"+name+"': starting unpatching transition",
				"livepatch: '"+name+"': unpatching complete")
		})
	}

	t.Run("portal", func(t *testing.T) {
		g.t = t
		status := fmt.Sprintf("Package: linux-image-%s\nStatus: install ok installed\nArchitecture: amd64\nVersion: %s\n", k.Release, k.Version)
		if r, err := vm.Exec(ctx, qemu.Command{Argv: []string{"/bin/sh", "-c", "mkdir -p /var/lib/dpkg && cat > /var/lib/dpkg/status"}, Stdin: status}); err != nil || r.Exit != 0 {
			t.Fatalf("write the guest's dpkg status: %v %+v", err, r)
		}
		g.ok(fmt.Sprintf("printf 'PATCH_SERVER=%s\\n' > /etc/sysconfig/kcare/kcare.conf", p.GuestURL()))
		if r := g.run("kcarectl --register " + key); r.Exit != 0 {
			t.Fatalf("kcarectl --register: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		for _, f := range fixes {
			g.step(f, "before", "vulnerable")
		}
		for n, f := range fixes {
			level := n + 1
			if err := p.PublishFile(levels[n], released.Add(time.Duration(level)*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if r := g.run("kcarectl --update"); r.Exit != 0 {
				t.Fatalf("kcarectl --update to level %d: exit %d\n%s%s", level, r.Exit, r.Stdout, r.Stderr)
			}
			g.step(f, "after", "fixed")
			// The level carries the fixes before it; the later bugs
			// are still there.
			for i, other := range fixes {
				want := "vulnerable"
				if i < n {
					want = "fixed"
				}
				if i == n {
					continue
				}
				if got, _ := g.repro(other); got != want {
					t.Errorf("at level %d, %s: %s; want %s", level, other.CVE.ID, got, want)
				}
			}
			if got, want := strings.TrimSpace(g.ok("ls /sys/kernel/livepatch")), cve.LevelName(level); got != want {
				t.Errorf("at level %d, /sys/kernel/livepatch holds %q; want %q alone", level, got, want)
			}
		}

		// kcarectl --patch-info lists each CVE of the applied level.
		var want strings.Builder
		for i, f := range fixes {
			if i > 0 {
				want.WriteString("\n")
			}
			fmt.Fprintf(&want, "kpatch-name: %s/%s\nkpatch-description: %s\nkpatch-kernel: %s\nkpatch-cve: %s\nkpatch-cve-url: %s\nkpatch-level: %d\n",
				k.Release, f.CVE.ID, f.CVE.Description, k.Release, f.CVE.ID, f.CVE.URL, len(fixes))
		}
		if got := g.ok("kcarectl --patch-info"); got != want.String() {
			t.Errorf("kcarectl --patch-info:\n%s\nwant:\n%s", got, want.String())
		}
		// kcarectl --vex and the portal's VEX document of the server
		// state each CVE fixed.
		checkVEX(t, "kcarectl --vex", []byte(g.ok("kcarectl --vex")), fixes)
		srv, err := p.Servers()
		if err != nil || len(srv) != 1 {
			t.Fatalf("the portal's servers: %v, %v; want one", srv, err)
		}
		if lvl := fmt.Sprint(srv[0]["patch_level"]); lvl != fmt.Sprint(len(fixes)) {
			t.Errorf("the portal says the server is at level %s; want %d", lvl, len(fixes))
		}
		checkVEX(t, "the portal's /admin/api/servers/{id}/vex", restVEX(t, p, fmt.Sprint(srv[0]["id"])), fixes)

		if r := g.run("kcarectl --unload"); r.Exit != 0 {
			t.Fatalf("kcarectl --unload: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		for _, f := range fixes {
			g.step(f, "unload", "vulnerable")
		}
		log := g.klpLog()
		for _, l := range log {
			fmt.Println(l)
		}
		var wantLines []string
		for n := 1; n <= len(fixes); n++ {
			name := cve.LevelName(n)
			wantLines = append(wantLines,
				"livepatch: enabling patch '"+name+"'",
				"livepatch: '"+name+"': starting patching transition",
				"livepatch: '"+name+"': patching complete")
		}
		last := cve.LevelName(len(fixes))
		wantLines = append(wantLines,
			"livepatch: '"+last+"': starting unpatching transition",
			"livepatch: '"+last+"': unpatching complete")
		wantLog(t, log, wantLines...)
		if got := strings.TrimSpace(g.ok("ls /sys/kernel/livepatch; grep ^kcare_ /proc/modules; true")); got != "" {
			t.Errorf("after --unload the guest still has %q", got)
		}
	})
}

// matrixLevel builds the level of every fix for kernel k with kcare-build
// matrix --test, and returns its bundle. The analyses and the kallsyms
// dump are named per kernel, as matrix takes them for many.
func matrixLevel(t *testing.T, ctx context.Context, k *debkernel.Kernel, fixes []cve.Fix, analyses []string, key, check, out string, released time.Time) string {
	t.Helper()
	cache := debkernel.DefaultCacheDir()
	args := []string{"matrix", "--kernels", k.Release, "--name", cve.LevelName(len(fixes)), "--level", fmt.Sprint(len(fixes)),
		"--sign-key", key, "--out", out, "--kallsyms", filepath.Join(cache, "kallsyms", "{build-id}.txt"),
		"--check", check, "--test", "--released", released.Format(time.RFC3339), "--cache", cache}
	for i, f := range fixes {
		// analyses/{release}/CVE-….json
		named := filepath.Join(out, "analyses", k.Release, f.CVE.ID+".json")
		if err := os.MkdirAll(filepath.Dir(named), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(analyses[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(named, data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--src", f.Livepatch(), "--check-against", filepath.Join(out, "analyses", "{release}", f.CVE.ID+".json"),
			"--cve", f.CVE.ID+":"+f.CVE.Description)
	}
	var stdout, stderr bytes.Buffer
	if code := buildcli.Run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("kcare-build matrix: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	t.Logf("kcare-build matrix:\n%s%s", stderr.String(), stdout.String())
	return filepath.Join(out, fmt.Sprintf("%s-%d.kcp", k.Release, len(fixes)))
}

// checkVEX checks an OpenVEX document states exactly the fixes, fixed,
// each with its CVE record's URL.
func checkVEX(t *testing.T, what string, data []byte, fixes []cve.Fix) {
	t.Helper()
	doc, err := vex.Parse(data)
	if err != nil {
		t.Errorf("%s: %v\n%s", what, err, data)
		return
	}
	var got, want []string
	for _, s := range doc.Statements {
		got = append(got, fmt.Sprintf("%s %s %s", s.Vulnerability.Name, s.Status, s.Vulnerability.ID))
	}
	for _, f := range fixes {
		want = append(want, fmt.Sprintf("%s %s %s", f.CVE.ID, vex.StatusFixed, f.CVE.URL))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s states:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// restVEX fetches the portal's VEX document of a server.
func restVEX(t *testing.T, p *fixture.Portal, id string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", p.URL()+"/admin/api/servers/"+id+"/vex", nil)
	req.Header.Set("X-Api-Key", p.Token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 {
		t.Fatalf("GET /admin/api/servers/%s/vex: %s\n%s", id, resp.Status, body)
	}
	var v json.RawMessage
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET /admin/api/servers/%s/vex: %v", id, err)
	}
	return body
}

// kcareBuild runs kcare-build in-process.
func kcareBuild(ctx context.Context, args ...string) (string, error) {
	return cve.KcareBuild(ctx, args...)
}
