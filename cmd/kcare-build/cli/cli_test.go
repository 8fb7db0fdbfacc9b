package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
