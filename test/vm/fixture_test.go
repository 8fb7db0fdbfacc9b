package vm_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	buildcli "github.com/kcare/kcare/cmd/kcare-build/cli"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/kbuild"
	"github.com/kcare/kcare/internal/trust"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/qemu"
)

// fixture is everything the scenarios share, built once per test binary.
type fixture struct {
	kernel  *debkernel.Kernel
	dir     string // host files, shared with the guest at /mnt/host
	initrd  string
	modules map[string]string // fixture name -> .ko
	pubKey  string
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

// requireVM skips (or, in CI, fails) when the host cannot run the VM
// suite, and returns the shared fixture.
func requireVM(t *testing.T) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("VM tests do not run with -short")
	}
	if err := qemu.CheckHost(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("VM suite cannot run: %v", err)
		}
		t.Skipf("VM suite cannot run: %v", err)
	}
	fixOnce.Do(func() { fix, fixErr = buildFixture() })
	if fixErr != nil {
		t.Fatalf("build fixture: %v", fixErr)
	}
	return fix
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// levels are the fixture modules: name, defines.
var levels = []struct {
	name    string
	defines []string
}{
	{"kcare_test_l1", []string{"KCARE_LEVEL=1"}},
	{"kcare_test_l2", []string{"KCARE_LEVEL=2"}},
	{"kcare_test_l3", []string{"KCARE_LEVEL=3", "KCARE_STALL"}},
}

func buildFixture() (*fixture, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "vm fixture: "+format+"\n", args...) }
	k, err := debkernel.Fetch(ctx, debkernel.DefaultCacheDir(), logf)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kcare-vm-")
	if err != nil {
		return nil, err
	}
	f := &fixture{kernel: k, dir: dir, modules: map[string]string{}}
	root := repoRoot()

	// The agent, static, and the pauser task.
	if err := run(ctx, root, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", filepath.Join(dir, "kcarectl"), "./cmd/kcarectl"); err != nil {
		return nil, err
	}
	if err := run(ctx, root, nil, "gcc", "-static", "-O2", "-o", filepath.Join(dir, "pauser"), "test/vm/testdata/pauser.c"); err != nil {
		return nil, err
	}

	// The fixture livepatch modules, built against the kernel's headers.
	h, err := kbuild.FindHeaders(k.HeadersDir)
	if err != nil {
		return nil, err
	}
	for _, l := range levels {
		out := filepath.Join(dir, l.name+".ko")
		logf("building %s", l.name)
		if err := kbuild.Build(ctx, kbuild.Options{
			Headers: h, Src: filepath.Join(root, "testdata/livepatch/fixture"),
			Name: l.name, Defines: l.defines, Out: out,
		}); err != nil {
			return nil, err
		}
		f.modules[l.name] = out
	}

	// Keys: the publisher the guest trusts, and a stranger it does not.
	for _, who := range []string{"publisher", "stranger"} {
		if code := buildcli.Run(ctx, []string{"keygen", "--name", "kcare " + who, "--out", filepath.Join(dir, who)}, &bytes.Buffer{}, os.Stderr); code != 0 {
			return nil, fmt.Errorf("keygen %s: exit %d", who, code)
		}
	}
	f.pubKey = filepath.Join(dir, "publisher.pub")

	// Bundles, packed from the bzImage as a publisher would.
	pack := func(out, module, key string, level int, extra ...string) error {
		args := append([]string{"pack", "--module", module, "--kernel", k.Vmlinuz,
			"--level", fmt.Sprint(level), "--sign-key", key, "--out", out,
			"--effective-release", effective(k.Release, level),
			"--released", time.Date(2026, 11, 10+level, 9, 0, 0, 0, time.UTC).Format(time.RFC3339),
			"--cve", fmt.Sprintf("CVE-2026-%04d:fixture fix %d", 1000+level, level)}, extra...)
		var stderr bytes.Buffer
		if code := buildcli.Run(ctx, args, &bytes.Buffer{}, &stderr); code != 0 {
			return fmt.Errorf("kcare-build pack %s: exit %d: %s", out, code, stderr.String())
		}
		return nil
	}
	pub, stranger := filepath.Join(dir, "publisher.key"), filepath.Join(dir, "stranger.key")
	for i, l := range levels {
		logf("packing %s", l.name)
		if err := pack(filepath.Join(dir, fmt.Sprintf("l%d.kcp", i+1)), f.modules[l.name], pub, i+1); err != nil {
			return nil, err
		}
	}
	if err := pack(filepath.Join(dir, "unknown-key.kcp"), f.modules["kcare_test_l1"], stranger, 1); err != nil {
		return nil, err
	}
	if err := flipped(filepath.Join(dir, "l1.kcp"), filepath.Join(dir, "flipped.kcp")); err != nil {
		return nil, err
	}
	if err := otherKernel(filepath.Join(dir, "l1.kcp"), pub, filepath.Join(dir, "other-kernel.kcp")); err != nil {
		return nil, err
	}

	f.initrd = filepath.Join(dir, "initrd.cpio")
	if err := qemu.BuildInitramfs(ctx, qemu.Image{
		Kernel: k,
		Files: map[string]string{
			"/usr/bin/kcarectl":                       filepath.Join(dir, "kcarectl"),
			"/usr/bin/pauser":                         filepath.Join(dir, "pauser"),
			"/etc/sysconfig/kcare/keys/publisher.pub": f.pubKey,
		},
		Modules: []string{"9p", "9pnet_virtio"},
	}, f.initrd); err != nil {
		return nil, err
	}
	return f, nil
}

// effective is the effective release the fixture level claims.
func effective(release string, level int) string {
	return strings.Replace(release, "-amd64", fmt.Sprintf(".kcare%d-amd64", level), 1)
}

// flipped copies a bundle and its signature with one byte of the module
// changed.
func flipped(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	b[len(b)-2048] ^= 0x40
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return err
	}
	return copyFile(src+".sig", dst+".sig")
}

// otherKernel re-packs a bundle as if built for another build of the same
// release, and signs it with the right key.
func otherKernel(src, keyPath, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	parsed, err := bundle.Parse(b)
	if err != nil {
		return err
	}
	m := parsed.Manifest
	m.Kernel.BuildID = strings.Repeat("0123456789", 4)
	var buf bytes.Buffer
	if err := bundle.Write(&buf, m, parsed.Module); err != nil {
		return err
	}
	key, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	s, err := trust.ReadSigner(key)
	if err != nil {
		return err
	}
	sig, err := s.Sign(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(dst+".sig", sig, 0o644)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
