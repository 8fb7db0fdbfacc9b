package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildrootUsage(t *testing.T) {
	cache := t.TempDir()
	for _, tt := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"buildroot"}, "kcare-build buildroot: give list, make or remove\n"},
		{[]string{"buildroot", "grow", "--cache", cache}, "kcare-build buildroot: unknown buildroot command \"grow\": list, make or remove\n"},
		{[]string{"buildroot", "make", "--cache", cache}, "kcare-build buildroot: give a Debian release (bookworm, trixie)\n"},
		{[]string{"buildroot", "list", "--cache", cache, "trixie"}, "kcare-build buildroot: list takes no arguments\n"},
	} {
		_, stderr, code := run(t, tt.args...)
		if code != ExitUsage || !strings.HasSuffix(stderr, tt.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d ending %q", tt.args, code, stderr, ExitUsage, tt.stderr)
		}
	}
	// remove of a build root never made names what is missing.
	_, stderr, code := run(t, "buildroot", "remove", "--cache", cache, "trixie")
	if code != ExitError || stderr != "kcare-build buildroot: no build root for trixie in "+filepath.Join(cache, "buildroots")+"\n" {
		t.Errorf("remove of a missing build root: exit %d, stderr %q", code, stderr)
	}
}

// TestBuildrootList lists the build roots a cache holds: a complete one
// (its marker written last) and not an interrupted one.
func TestBuildrootList(t *testing.T) {
	cache := t.TempDir()
	root := filepath.Join(cache, "buildroots", "trixie")
	os.MkdirAll(filepath.Join(root, "usr", "bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr", "bin", "make"), make([]byte, 3<<20), 0o755)
	os.WriteFile(filepath.Join(root, ".kcare-buildroot-v1.json"), []byte(`{"codename":"trixie","compiler":"x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0","made":"2026-11-30T19:32:15Z","took":33000000000,"mirror":"http://deb.debian.org/debian"}`), 0o644)
	os.MkdirAll(filepath.Join(cache, "buildroots", "bookworm.new", "usr"), 0o755)

	stdout, stderr, code := run(t, "buildroot", "list", "--cache", cache)
	want := "RELEASE  COMPILER                        SIZE   MADE                  DEBOOTSTRAP  DIR\n" +
		"trixie   x86_64-linux-gnu-gcc-14 14.2.0  3 MiB  2026-11-30T19:32:15Z  33s          " + root + "\n"
	if code != ExitOK || stdout != want {
		t.Errorf("buildroot list: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, stderr, stdout, want)
	}
	if _, stderr, code := run(t, "buildroot", "remove", "--cache", cache, "trixie"); code != ExitOK {
		t.Fatalf("remove: exit %d: %s", code, stderr)
	}
	if stdout, _, _ := run(t, "buildroot", "list", "--cache", cache, "--json"); stdout != "[]\n" {
		t.Errorf("buildroot list --json after remove = %q; want []", stdout)
	}
}
