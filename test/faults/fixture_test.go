package faults_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

// faultFixture is the end-to-end suite's fixture with a guest image of
// its own: kcarectl built with the faults tag, kcare-boot as the boot
// service runs it, and the modules to mount an ext4 disk.
type faultFixture struct {
	*fixture.Fixture
	initrd string
}

var (
	fixOnce sync.Once
	fix     *faultFixture
	fixErr  error
)

// requireHost skips (or, in CI, fails) when the host lacks what a test
// needs, as the end-to-end suite does.
func requireHost(t testing.TB, missing error) {
	t.Helper()
	if missing == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("fault tests cannot run: %v", missing)
	}
	t.Skipf("fault tests cannot run: %v", missing)
}

// requireVM returns the fault fixture, built once per test binary.
func requireVM(t testing.TB) *faultFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("VM tests do not run with -short")
	}
	requireHost(t, qemu.CheckHost())
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		requireHost(t, fmt.Errorf("mkfs.ext4 not found; install e2fsprogs"))
	}
	fixOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		start := time.Now()
		logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "faults fixture: "+format+"\n", args...) }
		fix, fixErr = buildFixture(ctx, logf)
		logf("built in %s", time.Since(start).Round(time.Millisecond))
	})
	if fixErr != nil {
		t.Fatalf("build fixture: %v", fixErr)
	}
	return fix
}

func buildFixture(ctx context.Context, logf func(string, ...any)) (*faultFixture, error) {
	f, err := fixture.Build(ctx, debkernel.DefaultCacheDir(), logf)
	if err != nil {
		return nil, err
	}
	ff := &faultFixture{Fixture: f, initrd: f.Path("faults-initrd.cpio")}
	logf("building kcarectl with the faults tag")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "faults", "-o", f.Path("kcarectl-faults"), "./cmd/kcarectl")
	cmd.Dir = fixture.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build -tags faults kcarectl: %v\n%s", err, out)
	}
	logf("building the faults initramfs")
	err = qemu.BuildInitramfs(ctx, qemu.Image{
		Kernel: f.Kernel,
		Files: map[string]string{
			"/usr/bin/kcarectl":                       f.Path("kcarectl-faults"),
			"/usr/bin/pauser":                         f.Path("pauser"),
			"/etc/sysconfig/kcare/keys/publisher.pub": f.Path("publisher.pub"),
			"/usr/libexec/kcare/kcare-boot":           filepath.Join(fixture.RepoRoot(), "deploy/systemd/kcare-boot"),
		},
		Modules: []string{"9p", "9pnet_virtio", "virtio_blk", "crc32c_generic", "ext4"},
	}, ff.initrd)
	if err != nil {
		return nil, err
	}
	return ff, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		os.RemoveAll(fix.Dir)
	}
	os.Exit(code)
}
