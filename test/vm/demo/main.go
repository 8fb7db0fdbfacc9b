// Command demo is `make demo`: it fetches the current Debian kernel, builds
// fixture livepatch levels against its headers, packs and signs them,
// starts eportal on the host's loopback and publishes them there, boots
// the kernel in QEMU, and has the guest register with an activation key
// and patch itself live through the portal, showing the patched
// functions' output before and after. It ends with a real security fix
// on a second guest (cve.go).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := qemu.CheckHost(); err != nil {
		return fmt.Errorf("%v (run scripts/setup-debian.sh first)", err)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...) }
	f, err := fixture.Build(ctx, debkernel.DefaultCacheDir(), logf)
	if err != nil {
		return err
	}
	defer os.RemoveAll(f.Dir)

	// The portal, with level 1 published.
	p, err := f.NewPortal(filepath.Join(f.Dir, "eportal-data"))
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return err
	}
	defer p.Stop()
	logf("eportal serving at %s", p.URL())
	if err := p.Publish(1, time.Now().Add(-72*time.Hour)); err != nil {
		return err
	}
	key, err := p.Eportal("", "key", "add", "--note", "demo fleet", "--limit", "10")
	if err != nil {
		return err
	}
	logf("published level 1; activation key %s", key)

	share := filepath.Join(f.Dir, "share")
	os.MkdirAll(share, 0o755)
	pub, err := os.ReadFile(filepath.Join(p.Data, "portal.pub"))
	if err != nil {
		return err
	}
	os.WriteFile(filepath.Join(share, "portal.pub"), pub, 0o644)
	for _, n := range []string{"flipped.kcp", "flipped.kcp.sig"} {
		b, _ := os.ReadFile(f.Path(n))
		os.WriteFile(filepath.Join(share, n), b, 0o644)
	}

	logf("booting Debian %s (%s) in QEMU", f.Kernel.Release, f.Kernel.Version)
	vm, err := qemu.Start(ctx, qemu.Config{
		Kernel: f.BootImage(),
		Initrd: f.Initrd,
		Shares: []qemu.Share{{Tag: "host", HostDir: share, GuestPath: "/mnt/host"}},
	})
	if err != nil {
		return err
	}
	defer vm.Stop()
	logf("guest up after %s", vm.BootTime().Round(time.Millisecond))

	guest := func(title string, cmds ...string) error { return guestStep(ctx, vm, title, cmds...) }
	// host runs one command on the host, printed with its output under it.
	host := func(title, line string, do func() (string, error)) error {
		fmt.Printf("\n== %s\nhost$ %s\n", title, line)
		out, err := do()
		if err != nil {
			return err
		}
		fmt.Println(strings.TrimRight(out, "\n"))
		return nil
	}
	conf := fmt.Sprintf("printf 'PATCH_SERVER=%s\\n' > /etc/sysconfig/kcare/kcare.conf", p.GuestURL())
	steps := []func() error{
		func() error {
			return guest("The guest: a name, and the running kernel unpatched",
				"hostname demo-guest", "hostname", "uname -r", "cat /proc/cmdline", "cat /proc/loadavg", "kcarectl --info")
		},
		func() error {
			return guest("Point kcarectl at the portal and trust its index key",
				"cp /mnt/host/portal.pub /etc/sysconfig/kcare/keys/", conf, "cat /etc/sysconfig/kcare/kcare.conf")
		},
		func() error {
			return guest("Register with the activation key: level 1 is applied", "kcarectl --register "+key)
		},
		func() error {
			return guest("After level 1", "cat /proc/cmdline", "cat /proc/loadavg", "ls /sys/kernel/livepatch", "uname -r", "kcarectl --uname")
		},
		func() error {
			return host("On the portal: publish level 2 (cumulative: also patches loadavg_proc_show)",
				"KCARE_PUBLISH_TOKEN=... kcare-build publish --portal "+p.URL()+" l2.kcp", func() (string, error) {
					return "published", p.Publish(2, time.Now().Add(-time.Hour))
				})
		},
		func() error { return guest("Check and update", "kcarectl --check", "kcarectl --update") },
		func() error {
			return guest("After level 2", "cat /proc/cmdline", "cat /proc/loadavg", "ls /sys/kernel/livepatch", "grep ^kcare_ /proc/modules | cut -d' ' -f1")
		},
		func() error { return guest("kcarectl --info", "kcarectl --info") },
		func() error { return guest("kcarectl --patch-info", "kcarectl --patch-info") },
		func() error {
			return host("On the portal: the server checked in, by its name", "eportal server list --data "+p.Data, func() (string, error) {
				return p.Eportal("", "server", "list")
			})
		},
		func() error {
			return guest("A tampered bundle is refused (exit 3: verification refused)", "kcarectl --apply /mnt/host/flipped.kcp => 3")
		},
		func() error { return guest("Unload", "kcarectl --unload") },
		func() error {
			return guest("After unload", "cat /proc/cmdline", "cat /proc/loadavg", "ls /sys/kernel/livepatch", "kcarectl --uname")
		},
		func() error { return guest("The kernel's own livepatch log", "dmesg | grep 'livepatch:'") },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return cveDemo(ctx, f, p, logf)
}

// guestStep runs each command of a step in the guest and prints it and
// its output together, so that every output stands right under its
// command. A command whose exit code is not 0 fails the demo, unless it
// is written "CMD => N": then it must exit N, which is shown.
func guestStep(ctx context.Context, vm *qemu.VM, title string, cmds ...string) error {
	fmt.Printf("\n== %s\n", title)
	for _, c := range cmds {
		line, wantExit := c, 0
		if l, n, ok := strings.Cut(c, " => "); ok {
			line = l
			fmt.Sscan(n, &wantExit)
		}
		fmt.Printf("guest# %s\n", line)
		r, err := vm.Shell(ctx, "{ "+line+"; } 2>&1")
		if err != nil {
			return err
		}
		fmt.Print(r.Stdout)
		if r.Stdout != "" && !strings.HasSuffix(r.Stdout, "\n") {
			fmt.Println()
		}
		if r.Exit != 0 {
			fmt.Printf("(exit %d)\n", r.Exit)
		}
		if r.Exit != wantExit {
			return fmt.Errorf("%q: exit %d, want %d", line, r.Exit, wantExit)
		}
	}
	return nil
}
