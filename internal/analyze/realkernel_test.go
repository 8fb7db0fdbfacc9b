package analyze

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the analyses kept in testdata/cve")

// TestAnalyzeRealFixes analyses each committed CVE fix against the
// vulnerable Debian kernel it was written for: Debian's source and config,
// prepared once and cached under $KCARE_TEST_CACHE/analyze. The table
// must match testdata/cve/<CVE>/analysis.txt, and the functions to
// replace must be the ones the livepatch replaces.
func TestAnalyzeRealFixes(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("fetches and prepares a Debian kernel source tree; runs in CI")
	}
	cache := os.Getenv("KCARE_TEST_CACHE")
	if cache == "" {
		cache = "/var/cache/kcare-test"
	}
	release := os.Getenv("KCARE_TEST_VULNERABLE_RELEASE")
	if release == "" {
		release = "6.1.0-47-amd64"
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	src := SourceOptions{Cache: filepath.Join(cache, "analyze"), Logf: t.Logf}
	start := time.Now()
	if _, err := Prepare(ctx, release, src); err != nil {
		t.Fatal(err)
	}
	t.Logf("source of %s ready in %s", release, time.Since(start).Round(time.Millisecond))

	for _, tc := range []struct{ id, replace string }{
		{"CVE-2026-53287", "[vmlinux:__audit_log_capset]"},
		{"CVE-2026-72379", "[vmlinux:vfs_tmpfile]"},
		{"CVE-2026-93146", "[vmlinux:proc_timens_set_offset]"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			dir := filepath.Join("..", "..", "testdata", "cve", tc.id)
			patch, err := os.ReadFile(filepath.Join(dir, "fix.patch"))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			a, err := Run(ctx, Options{Release: release, Patch: patch, PatchName: "fix.patch", Source: src})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("analysed in %s", time.Since(start).Round(time.Millisecond))
			if got := fmt.Sprint(a.Replace); got != tc.replace {
				t.Errorf("replace %s; want %s", got, tc.replace)
			}
			ko := livepatchTargets(t, dir)
			for _, want := range a.Replace {
				if !ko[want] {
					t.Errorf("the livepatch in %s does not replace %s", dir, want)
				}
			}
			var text bytes.Buffer
			a.WriteText(&text)
			golden := filepath.Join(dir, "analysis.txt")
			if *update {
				os.WriteFile(golden, text.Bytes(), 0o644)
			}
			if want, err := os.ReadFile(golden); err != nil || text.String() != string(want) {
				t.Errorf("analysis:\n%s\nwant (%s):\n%s", text.String(), golden, want)
			}
		})
	}
}

// TestAnalyzeModuleObject: a change to code built into a module is listed
// under that module's klp_object, as kbuild compiled it (-DMODULE).
func TestAnalyzeModuleObject(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("fetches and prepares a Debian kernel source tree; runs in CI")
	}
	cache := os.Getenv("KCARE_TEST_CACHE")
	if cache == "" {
		cache = "/var/cache/kcare-test"
	}
	release := os.Getenv("KCARE_TEST_VULNERABLE_RELEASE")
	if release == "" {
		release = "6.1.0-47-amd64"
	}
	patch, err := os.ReadFile(filepath.Join("testdata", "binfmt_misc.patch"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	a, err := Run(ctx, Options{Release: release, Patch: patch, PatchName: "binfmt_misc.patch",
		Source: SourceOptions{Cache: filepath.Join(cache, "analyze"), Logf: t.Logf}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(a.Replace), "[binfmt_misc:bm_status_read]"; got != want {
		t.Errorf("replace %s; want %s", got, want)
	}
}

// livepatchTargets reads the old_name of each klp_func in a livepatch
// source: the .old_name = "…" lines (every one in vmlinux here).
func livepatchTargets(t *testing.T, dir string) map[Target]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "livepatch", "livepatch.c"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[Target]bool{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if name, ok := bytes.CutPrefix(line, []byte(`.old_name = "`)); ok {
			out[Target{"vmlinux", string(bytes.TrimSuffix(name, []byte(`",`)))}] = true
		}
	}
	return out
}
