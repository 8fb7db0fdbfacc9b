package cli

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/analyze"
	"github.com/kcare/kcare/internal/kmod"
)

// cveFixes are the real fixes of testdata/cve, in level order.
var cveFixes = []string{"CVE-2026-53287", "CVE-2026-72379", "CVE-2026-93146"}

// TestModuleCumulative builds the three real CVE livepatches into one
// cumulative level (--src three times) against the test kernel: one
// livepatch module whose klp_objects replace every function of the three
// fixes, checked against the three analyses. A level that leaves one fix
// out is refused against all three, naming what it lacks.
func TestModuleCumulative(t *testing.T) {
	headers := need(t, "KCARE_TEST_HEADERS")
	release := need(t, "KCARE_TEST_RELEASE")
	kallsyms := need(t, "KCARE_TEST_KALLSYMS")
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }

	var srcs, against []string
	for _, id := range cveFixes {
		srcs = append(srcs, "--src", "../../../testdata/cve/"+id+"/livepatch")
		// The committed analysis, moved to the test kernel.
		a, err := analyze.ReadAnalysis(mustRead(t, "../../../testdata/cve/"+id+"/analysis.json"))
		if err != nil {
			t.Fatal(err)
		}
		a.Kernel.Release = release
		data, _ := json.Marshal(a)
		if err := os.WriteFile(p(id+".json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		against = append(against, "--check-against", p(id+".json"))
	}

	args := append([]string{"module", "--headers", headers, "--kallsyms", kallsyms, "--out", p("kcare_cve_l3.ko"), "-v"}, srcs...)
	stdout, stderr, code := run(t, append(args, against...)...)
	if code != ExitOK {
		t.Fatalf("module with three sources: exit %d: %s", code, tail(stderr))
	}
	if stdout != p("kcare_cve_l3.ko")+"\n" {
		t.Errorf("stdout %q; want the module's path", stdout)
	}
	ko := mustRead(t, p("kcare_cve_l3.ko"))
	info, err := kmod.ReadInfo(ko)
	if err != nil || !info.Livepatch || info.Name != "kcare_cve_l3" || info.Release() != release {
		t.Errorf("modinfo %+v, %v; want livepatch kcare_cve_l3 for %s", info, err, release)
	}
	funcs, err := analyze.KlpFuncs(ko)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range funcs {
		got = append(got, f.String())
	}
	slices.Sort(got)
	want := []string{"vmlinux:__audit_log_capset", "vmlinux:proc_timens_set_offset", "vmlinux:vfs_tmpfile"}
	if !slices.Equal(got, want) {
		t.Errorf("the level replaces %q; want %q", got, want)
	}
	// Each fix's non-exported references became livepatch relocations.
	for _, sym := range []string{"may_open", "ima_post_create_tmpfile", "timens_for_children_get", "free_time_ns", "offset_lock"} {
		if !strings.Contains(stderr, "klp: "+sym+" -> vmlinux position 0") {
			t.Errorf("module -v does not say %s was resolved:\n%s", sym, tail(stderr))
		}
	}

	// Level 2 (two fixes) against all three analyses: refused, named.
	args = append([]string{"module", "--headers", headers, "--kallsyms", kallsyms, "--out", p("kcare_cve_l2.ko")}, srcs[:4]...)
	_, stderr, code = run(t, append(args, against...)...)
	if code != ExitRefused || !strings.Contains(stderr, "it lacks vmlinux:proc_timens_set_offset, which the analysis of fix.patch on "+release+" lists") {
		t.Errorf("a level without CVE-2026-93146 checked against its analysis: exit %d, stderr %q; want %d naming proc_timens_set_offset", code, tail(stderr), ExitRefused)
	}
	if _, err := os.Stat(p("kcare_cve_l2.ko")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused level was written: %v", err)
	}
}

// TestReadModuleFile: a module object may come compressed, as trixie
// ships its modules (.ko.xz), or as .ko.zst.
func TestReadModuleFile(t *testing.T) {
	dir := t.TempDir()
	want := []byte("\x7fELF not really a module, but bytes to round-trip")
	plain := filepath.Join(dir, "m.ko")
	os.WriteFile(plain, want, 0o644)
	for _, c := range []struct{ ext, cmd string }{{".xz", "xz"}, {".zst", "zstd"}} {
		if out, err := exec.Command(c.cmd, "-k", "-q", plain).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", c.cmd, err, out)
		}
		got, err := readModuleFile(plain + c.ext)
		if err != nil || string(got) != string(want) {
			t.Errorf("readModuleFile(m.ko%s) = %q, %v", c.ext, got, err)
		}
	}
	os.WriteFile(filepath.Join(dir, "m.ko.gz"), want, 0o644)
	if _, err := readModuleFile(filepath.Join(dir, "m.ko.gz")); !errors.Is(err, errCompressedModule) {
		t.Errorf("readModuleFile(m.ko.gz): %v; want errCompressedModule", err)
	}
}
