package qemu_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/qemu"
)

// requireHost skips the test when this host cannot boot a guest, and
// fails it instead in CI, where it must.
func requireHost(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	if err := qemu.CheckHost(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot boot a VM: %v", err)
		}
		t.Skipf("cannot boot a VM: %v", err)
	}
}

// serveHost starts an HTTP server on the host's loopback answering body
// and returns its port.
func serveHost(t *testing.T, body string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func TestBoot(t *testing.T) {
	requireHost(t)
	testStart := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()

	k, err := debkernel.Fetch(ctx, debkernel.DefaultCacheDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fetched %s (%s) in %v", k.Release, k.Version, time.Since(testStart).Round(time.Millisecond))
	work := t.TempDir()
	extra := filepath.Join(work, "hello.sh")
	if err := os.WriteFile(extra, []byte("#!/bin/sh\necho hello from the image\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := qemu.BuildInitramfs(ctx, qemu.Image{
		Kernel:  k,
		Files:   map[string]string{"/usr/bin/hello": extra, "/var/lib/kcare-test/hello": extra},
		Modules: []string{"dummy"},
	}, initrd); err != nil {
		t.Fatal(err)
	}
	t.Logf("initramfs built at %v", time.Since(testStart).Round(time.Millisecond))
	shared := filepath.Join(work, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shared, "from-host"), []byte("written by the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := serveHost(t, "served by the host\n")

	vm, err := qemu.Start(ctx, qemu.Config{
		Kernel:     k.Vmlinux,
		Initrd:     initrd,
		Shares:     []qemu.Share{{Tag: "shared", HostDir: shared, GuestPath: "/mnt/shared"}},
		ConsoleLog: filepath.Join(work, "console.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console:\n%s", vm.Console())
		}
		vm.Stop()
	})
	t.Logf("booted %s (%s) in %v", k.Release, filepath.Base(k.Vmlinux), vm.BootTime().Round(time.Millisecond))
	if r, err := vm.Run(ctx, "cat", "/proc/uptime"); err == nil {
		t.Logf("guest uptime after the first answer: %s", strings.Fields(r.Stdout + " ?")[0])
	}

	run := func(argv ...string) qemu.Result {
		t.Helper()
		r, err := vm.Run(ctx, argv...)
		if err != nil {
			t.Fatal(err)
		}
		if r.Exit != 0 {
			t.Fatalf("%q: exit %d\nstdout: %s\nstderr: %s", argv, r.Exit, r.Stdout, r.Stderr)
		}
		return r
	}

	t.Run("uname", func(t *testing.T) {
		if got := strings.TrimSpace(run("uname", "-r").Stdout); got != k.Release {
			t.Errorf("uname -r = %q; want %q", got, k.Release)
		}
	})
	t.Run("livepatch_sysfs", func(t *testing.T) {
		run("test", "-d", "/sys/kernel/livepatch")
	})
	t.Run("image_files_and_modules", func(t *testing.T) {
		if got := run("hello").Stdout; got != "hello from the image\n" {
			t.Errorf("hello = %q", got)
		}
		// Image files under /var survive the tmpfs mounted there.
		if got := run("/var/lib/kcare-test/hello").Stdout; got != "hello from the image\n" {
			t.Errorf("/var/lib/kcare-test/hello = %q", got)
		}
		if got := run("stat", "-f", "-c", "%T", "/var").Stdout; got != "tmpfs\n" {
			t.Errorf("/var is %q; want tmpfs", got)
		}
		if got := run("cat", "/sys/module/dummy/initstate").Stdout; got != "live\n" {
			t.Errorf("dummy initstate = %q; want live", got)
		}
	})
	t.Run("share_both_ways", func(t *testing.T) {
		if got := run("cat", "/mnt/shared/from-host").Stdout; got != "written by the host\n" {
			t.Errorf("guest read %q", got)
		}
		run("/bin/sh", "-c", "echo written by the guest > /mnt/shared/from-guest")
		got, err := os.ReadFile(filepath.Join(shared, "from-guest"))
		if err != nil || string(got) != "written by the guest\n" {
			t.Errorf("host read %q, %v", got, err)
		}
	})
	t.Run("reach_host_loopback", func(t *testing.T) {
		r := run("wget", "-qO-", fmt.Sprintf("http://10.0.2.2:%d/", port))
		if r.Stdout != "served by the host\n" {
			t.Errorf("wget = %q", r.Stdout)
		}
	})
	t.Run("exec", func(t *testing.T) {
		r, err := vm.Exec(ctx, qemu.Command{
			Argv: []string{"/bin/sh", "-c", "cat; echo $GREETING; pwd; exit 7"},
			Env:  []string{"GREETING=hi"}, Dir: "/etc", Stdin: "in\n",
		})
		if err != nil {
			t.Fatal(err)
		}
		if r.Stdout != "in\nhi\n/etc\n" || r.Exit != 7 {
			t.Errorf("exec = %+v", r)
		}
		if _, err := vm.Exec(ctx, qemu.Command{Argv: []string{"sleep", "30"}, Timeout: 500 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Errorf("sleep past its timeout: %v; want a timeout", err)
		}
		if _, err := vm.Run(ctx, "/no/such/command"); err == nil {
			t.Error("running a missing command succeeded")
		}
	})

	stopStart := time.Now()
	if err := vm.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(stopStart).Round(time.Millisecond))
	if !strings.Contains(vm.Console(), "reboot: Power down") {
		t.Errorf("console does not show a power down:\n%s", vm.Console())
	}
	if err := vm.Stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	t.Logf("whole test took %v", time.Since(testStart).Round(time.Millisecond))
}

// TestStartFails boots without an initramfs: the kernel finds no root file
// system, panics, and QEMU exits; with a short boot timeout Start gives up
// before that (the kernel is told to wait for its root device far longer,
// so the panic cannot win the race on a fast machine). Either way the
// error quotes the console.
func TestStartFails(t *testing.T) {
	requireHost(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	k, err := debkernel.Fetch(ctx, debkernel.DefaultCacheDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		timeout time.Duration
		append  string
		want    []string
	}{
		{"timeout", 2 * time.Second, "rootdelay=600", []string{"waiting up to 2s for the guest to answer", "last 40 lines of the console:\n"}},
		{"panic", 0, "", []string{"qemu exited before the guest answered", "Kernel panic"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := qemu.Start(ctx, qemu.Config{Kernel: k.Vmlinux, BootTimeout: tt.timeout, Append: tt.append})
			if err == nil {
				t.Fatal("Start without an initramfs succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Start error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}
