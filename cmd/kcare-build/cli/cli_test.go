package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kcare/kcare/internal/bundle"
)

func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = Run(context.Background(), args, &o, &e)
	return o.String(), e.String(), code
}

// need returns the environment variable name, skipping the test when it is
// unset, or failing it in CI.
func need(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set (make test sets it from the fetched Debian kernel)", name)
		}
		t.Skipf("%s is not set", name)
	}
	return v
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, ExitUsage, "usage: kcare-build"},
		{[]string{"frob"}, ExitUsage, "unknown command"},
		{[]string{"pack", "--level", "1"}, ExitUsage, "--module is required"},
		{[]string{"keygen", "--out", "x"}, ExitUsage, "--name is required"},
		{[]string{"verify", "--keyring", "k"}, ExitUsage, "give one bundle file"},
		{[]string{"module", "--headers", "h", "--src", "s", "--out", "x.ko", "stray"}, ExitUsage, "unexpected argument"},
	}
	for _, tt := range tests {
		_, stderr, code := run(t, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("kcare-build %v: exit %d, stderr %q; want %d containing %q", tt.args, code, stderr, tt.code, tt.stderr)
		}
	}
}

func TestKeygenNeverOverwrites(t *testing.T) {
	out := filepath.Join(t.TempDir(), "pub")
	stdout, stderr, code := run(t, "keygen", "--name", "kcare test", "--out", out)
	if code != 0 || len(strings.TrimSpace(stdout)) != 40 {
		t.Fatalf("keygen: exit %d, stdout %q, stderr %q; want a fingerprint", code, stdout, stderr)
	}
	if fi, err := os.Stat(out + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if _, _, code := run(t, "keygen", "--name", "kcare test", "--out", out); code == 0 {
		t.Error("keygen over an existing key succeeded")
	}
}

// TestPipelineRealKernel builds the level 1 fixture against the Debian
// kernel's headers, packs it from the bzImage, verifies it, and has gpg
// verify it too.
func TestPipelineRealKernel(t *testing.T) {
	vmlinuz := need(t, "KCARE_TEST_VMLINUZ")
	headers := need(t, "KCARE_TEST_HEADERS")
	release := need(t, "KCARE_TEST_RELEASE")
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	for _, who := range []string{"publisher", "stranger"} {
		if _, stderr, code := run(t, "keygen", "--name", "kcare "+who, "--out", p(who)); code != 0 {
			t.Fatalf("keygen: %s", stderr)
		}
	}
	if _, stderr, code := run(t, "module", "--headers", headers, "--src", "../../../testdata/livepatch/fixture",
		"--define", "KCARE_LEVEL=1", "--out", p("kcare_test_l1.ko")); code != 0 {
		t.Fatalf("module: exit %d: %s", code, stderr)
	}
	stdout, stderr, code := run(t, "pack", "--module", p("kcare_test_l1.ko"), "--kernel", vmlinuz, "--level", "1",
		"--cve", "CVE-2026-1001:fixture fix", "--sign-key", p("publisher.key"), "--out", p("l1.kcp"))
	if code != 0 {
		t.Fatalf("pack: exit %d: %s", code, stderr)
	}
	t.Logf("pack: %s", stdout)

	data, err := os.ReadFile(p("l1.kcp"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	if m.Kernel.Release != release || len(m.Kernel.BuildID) != 40 || !strings.HasPrefix(m.Kernel.Version, "Linux version "+release+" ") || m.Module.Name != "kcare_test_l1" {
		t.Errorf("manifest kernel %+v module %+v; want release %s, a 40-hex build-id, module kcare_test_l1", m.Kernel, m.Module, release)
	}

	if _, stderr, code := run(t, "verify", "--keyring", p("publisher.pub"), p("l1.kcp")); code != 0 {
		t.Errorf("verify with the publisher's key: exit %d: %s", code, stderr)
	}
	if _, stderr, code := run(t, "verify", "--keyring", p("stranger.pub"), p("l1.kcp")); code != ExitRefused || !strings.Contains(stderr, "unknown key") {
		t.Errorf("verify with another key: exit %d, %q; want %d, unknown key", code, stderr, ExitRefused)
	}
	tampered := bytes.Clone(data)
	tampered[len(tampered)/2] ^= 1
	os.WriteFile(p("bad.kcp"), tampered, 0o644)
	os.WriteFile(p("bad.kcp.sig"), mustRead(t, p("l1.kcp.sig")), 0o644)
	if _, stderr, code := run(t, "verify", "--keyring", p("publisher.pub"), p("bad.kcp")); code != ExitRefused || !strings.Contains(stderr, "bad signature") {
		t.Errorf("verify a tampered bundle: exit %d, %q; want %d, bad signature", code, stderr, ExitRefused)
	}

	// gpg, from a fresh home, with only the publisher's public key.
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gpg not found")
		}
		t.Skip("gpg not found")
	}
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(home)
	os.Chmod(home, 0o700)
	gpgRun := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, gpg, append([]string{"--batch", "--no-tty"}, args...)...)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	defer func() {
		c := exec.Command("gpgconf", "--kill", "gpg-agent")
		c.Env = append(os.Environ(), "GNUPGHOME="+home)
		c.Run()
	}()
	if out, err := gpgRun("--import", p("publisher.pub")); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	if out, err := gpgRun("--verify", p("l1.kcp.sig"), p("l1.kcp")); err != nil || !strings.Contains(out, "Good signature") {
		t.Errorf("gpg --verify l1.kcp.sig l1.kcp: %v\n%s", err, out)
	}
	if out, err := gpgRun("--verify", p("bad.kcp.sig"), p("bad.kcp")); err == nil {
		t.Errorf("gpg --verify accepted a tampered bundle:\n%s", out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestModuleUsage(t *testing.T) {
	base := []string{"module", "--headers", "h", "--src", "s", "--out", "x.ko"}
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"--kallsyms", "k", "--system-map", "m"}, "give --kallsyms or --system-map, not both"},
		{[]string{"--sympos", "enabled"}, "sympos \"enabled\": want [OBJECT:]NAME=POS"},
		{[]string{"--sympos", "enabled=first"}, "not a number from 0 up"},
	}
	for _, tt := range tests {
		_, stderr, code := run(t, append(append([]string(nil), base...), tt.args...)...)
		if code != ExitUsage || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("kcare-build module %v: exit %d, stderr %q; want %d containing %q", tt.args, code, stderr, ExitUsage, tt.stderr)
		}
	}
}

// TestModuleKlpRealKernel builds the klp fixtures against the Debian
// kernel's headers and kallsyms, packs one, and has verify list its
// livepatch relocations.
func TestModuleKlpRealKernel(t *testing.T) {
	vmlinuz := need(t, "KCARE_TEST_VMLINUZ")
	headers := need(t, "KCARE_TEST_HEADERS")
	release := need(t, "KCARE_TEST_RELEASE")
	kallsyms := need(t, "KCARE_TEST_KALLSYMS")
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }

	stdout, stderr, code := run(t, "module", "--headers", headers, "--src", "../../../testdata/livepatch/klp",
		"--kallsyms", kallsyms, "--out", p("kcare_test_klp.ko"), "-v")
	if code != 0 {
		t.Fatalf("module: exit %d: %s", code, stderr)
	}
	if stdout != p("kcare_test_klp.ko")+"\n" {
		t.Errorf("module stdout = %q, want the module's path", stdout)
	}
	var got []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "klp: ") {
			got = append(got, l)
		}
	}
	sort.Strings(got)
	want := []string{
		"klp: _acpi_module_name -> vmlinux position 2 (KCARE_SYMPOS in the source), relocations .text 1",
		"klp: get_cmdline -> vmlinux position 0, relocations .rodata 1",
		"klp: saved_command_line -> vmlinux position 0, relocations .data 1",
		"klp: sched_schedstats -> vmlinux position 0, relocations __jump_table 1",
		"klp: skip_atoi -> vmlinux position 0, relocations .text 1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("module -v resolved (-want +got):\n%s", diff)
	}

	if _, stderr, code := run(t, "keygen", "--name", "kcare publisher", "--out", p("publisher")); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	if _, stderr, code := run(t, "pack", "--module", p("kcare_test_klp.ko"), "--kernel", vmlinuz, "--level", "1",
		"--sign-key", p("publisher.key"), "--out", p("klp.kcp")); code != 0 {
		t.Fatalf("pack: exit %d: %s", code, stderr)
	}
	stdout, stderr, code = run(t, "verify", "--keyring", p("publisher.pub"), p("klp.kcp"))
	if code != 0 {
		t.Fatalf("verify: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 8 || lines[2] != "livepatch relocations: 5" ||
		lines[1] != p("klp.kcp")+": level 1, module kcare_test_klp, kernel "+release+lines[1][len(p("klp.kcp")+": level 1, module kcare_test_klp, kernel "+release):] {
		t.Fatalf("verify stdout:\n%s\nwant the signature, the summary and 5 livepatch relocations", stdout)
	}
	relLine := regexp.MustCompile(`^  (\S+)\+0x[0-9a-f]+ (R_X86_64_\w+) vmlinux (\S+) [+-]\d+$`)
	var rels []string
	for _, l := range lines[3:] {
		m := relLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("verify relocation line %q does not read SECTION+OFFSET TYPE OBJECT NAME,POS ADDEND", l)
			continue
		}
		rels = append(rels, m[1]+" "+m[3])
	}
	sort.Strings(rels)
	wantRels := []string{".data saved_command_line,0", ".rodata get_cmdline,0", ".text _acpi_module_name,2", ".text skip_atoi,0", "__jump_table sched_schedstats,0"}
	if diff := cmp.Diff(wantRels, rels); diff != "" {
		t.Errorf("verify relocations (-want +got):\n%s", diff)
	}

	// A module object: binfmt_misc, its symbols from the image's .ko.
	modules := filepath.Join(filepath.Dir(filepath.Dir(vmlinuz)), "lib/modules", release)
	_, stderr, code = run(t, "module", "--headers", headers, "--src", "../../../testdata/livepatch/klpmod",
		"--kallsyms", kallsyms, "--object", "binfmt_misc", "--modules", modules, "--out", p("kcare_test_klpmod.ko"), "-v")
	if code != 0 {
		t.Fatalf("module (binfmt_misc): exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "klp: enabled -> binfmt_misc position 0, relocations .text 1\n") {
		t.Errorf("module -v does not say enabled resolved in binfmt_misc:\n%s", tail(stderr))
	}

	// A symbol nobody has: exit 1, named.
	_, stderr, code = run(t, "module", "--headers", headers, "--src", "../../../internal/klp/testdata/refuse",
		"--define", "KCARE_CASE=2", "--kallsyms", kallsyms, "--out", p("kcare_refuse.ko"))
	if code != ExitError || !strings.Contains(stderr, "kcare-build module: build kcare_refuse: kcare_no_such_symbol: unresolved symbol: not exported, and not in "+kallsyms+"\n") {
		t.Errorf("module with an unknown symbol: exit %d, stderr %q; want %d naming kcare_no_such_symbol", code, tail(stderr), ExitError)
	}
	if _, err := os.Stat(p("kcare_refuse.ko")); err == nil {
		t.Error("a refused module was written")
	}
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

func TestFindModule(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"kernel/fs/binfmt_misc.ko", "kernel/fs/nls/nls-utf8.ko", "kernel/fs/zstd_mod.ko.zst",
		"kernel/fs/xz_mod.ko.xz", "kernel/fs/gz_mod.ko.gz", "kernel/a/dup.ko", "kernel/b/dup.ko"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	tests := []struct {
		name, want, err string
	}{
		{"binfmt_misc", "kernel/fs/binfmt_misc.ko", ""},
		{"nls_utf8", "kernel/fs/nls/nls-utf8.ko", ""},
		{"zstd_mod", "kernel/fs/zstd_mod.ko.zst", ""},
		{"xz_mod", "kernel/fs/xz_mod.ko.xz", ""},
		{"gz_mod", "", "compressed module; decompress it and give --object gz_mod=FILE.ko"},
		{"dup", "", "2 files under"},
		{"ext4", "", "no ext4.ko under"},
	}
	for _, tt := range tests {
		got, err := findModule(dir, tt.name)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("findModule(%s) = %q, %v; want error %q", tt.name, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != filepath.Join(dir, tt.want) {
			t.Errorf("findModule(%s) = %q, %v; want %s", tt.name, got, err, tt.want)
		}
	}
}
