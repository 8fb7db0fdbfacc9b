package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/analyze"
)

// TestPackCheckAgainst builds the real livepatch of CVE-2026-53287 (it
// replaces __audit_log_capset) against the test kernel's headers and packs
// it against two analyses of that kernel: one listing __audit_log_capset,
// which it passes, and one also listing vfs_tmpfile, which it fails, named;
// module --check-against refuses to write it too.
func TestPackCheckAgainst(t *testing.T) {
	vmlinuz := need(t, "KCARE_TEST_VMLINUZ")
	headers := need(t, "KCARE_TEST_HEADERS")
	release := need(t, "KCARE_TEST_RELEASE")
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	if _, stderr, code := run(t, "keygen", "--name", "kcare publisher", "--out", p("publisher")); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	if _, stderr, code := run(t, "module", "--headers", headers, "--src", "../../../testdata/cve/CVE-2026-53287/livepatch",
		"--out", p("kcare_cve_53287.ko")); code != 0 {
		t.Fatalf("module: exit %d: %s", code, stderr)
	}
	// The committed analysis of the fix, moved to the test kernel.
	a, err := analyze.ReadAnalysis(mustRead(t, "../../../testdata/cve/CVE-2026-53287/analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	a.Kernel.Release = release
	write := func(name string, a *analyze.Analysis) string {
		data, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p(name)
	}
	pack := func(analysis string) (string, int) {
		_, stderr, code := run(t, "pack", "--module", p("kcare_cve_53287.ko"), "--kernel", vmlinuz, "--level", "1",
			"--check-against", analysis, "--sign-key", p("publisher.key"), "--out", p("l1.kcp"))
		return stderr, code
	}

	if stderr, code := pack(write("complete.json", a)); code != ExitOK {
		t.Fatalf("pack against an analysis it covers: exit %d: %s", code, stderr)
	}
	a.Replace = append(a.Replace, analyze.Target{Object: "vmlinux", Function: "vfs_tmpfile"})
	more := write("more.json", a)

	// module refuses to write it.
	_, stderr, code := run(t, "module", "--headers", headers, "--src", "../../../testdata/cve/CVE-2026-53287/livepatch",
		"--check-against", more, "--out", p("kcare_more.ko"))
	wantModule := "kcare-build module: build kcare_more: refused: the livepatch does not replace every changed function: it lacks vmlinux:vfs_tmpfile, which the analysis of fix.patch on " + release + " lists\n"
	if code != ExitRefused || stderr != wantModule {
		t.Errorf("module against an analysis listing one more function: exit %d, stderr %q; want %d, %q", code, stderr, ExitRefused, wantModule)
	}
	if _, err := os.Stat(p("kcare_more.ko")); !os.IsNotExist(err) {
		t.Errorf("module wrote the refused module: %v", err)
	}

	// pack refuses to pack it.
	stderr, code = pack(more)
	want := "kcare-build pack: module " + p("kcare_cve_53287.ko") + ": refused: the livepatch does not replace every changed function: it lacks vmlinux:vfs_tmpfile, which the analysis of fix.patch on " + release + " lists\n"
	if code != ExitRefused || stderr != want {
		t.Errorf("pack against an analysis listing one more function: exit %d, stderr %q; want %d, %q", code, stderr, ExitRefused, want)
	}
	if strings.Contains(stderr, "__audit_log_capset") {
		t.Errorf("the refusal names a function the module replaces: %s", stderr)
	}
}

func TestAnalyzeUsage(t *testing.T) {
	patch := filepath.Join(t.TempDir(), "fix.patch")
	os.WriteFile(patch, []byte("--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n"), 0o644)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"analyze", patch}, ExitUsage, "kcare-build analyze: --kernel is required\n"},
		{[]string{"analyze", "--kernel", "6.1.0-47-amd64"}, ExitUsage, "kcare-build analyze: give one patch file\n"},
		{[]string{"analyze", "--kernel", "6.1.0-47-amd64", patch, patch}, ExitUsage, "kcare-build analyze: give one patch file\n"},
		{[]string{"analyze", "--kernel", "6.1.0-47", "--cache", t.TempDir(), patch}, ExitError,
			"kcare-build analyze: prepare source: \"6.1.0-47\" is not a Debian kernel release such as 6.1.0-47-amd64\n"},
		{[]string{"pack", "--module", "x.ko", "--kernel", "k", "--level", "1", "--sign-key", "k", "--out", "o", "--check-against"}, ExitUsage, "flag needs an argument: -check-against"},
	} {
		_, stderr, code := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("kcare-build %q: exit %d, stderr %q; want %d, %q", tc.args, code, stderr, tc.code, tc.stderr)
		}
	}
}
