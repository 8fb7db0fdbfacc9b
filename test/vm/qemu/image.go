package qemu

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/initramfs"
)

// GuestdPort is the guest's TCP port where guestd listens.
const GuestdPort = 7100

// guestdPackage is built into the image as /sbin/guestd.
const guestdPackage = "github.com/kcare/kcare/test/vm/guestd"

// Image says what goes into an initramfs besides busybox and guestd.
type Image struct {
	Kernel *debkernel.Kernel
	// Files maps a guest path to a host file copied there, keeping the
	// host file's mode. Files under /tmp, /run and /var are copied into
	// the tmpfs mounted there at boot.
	Files map[string]string
	// Modules names modules to insmod at boot after BaseModules; their
	// dependencies are resolved from modules.dep and loaded first.
	Modules []string
	// Init, when set, is a shell script the guest runs once after its
	// boot script, instead of guestd, and then powers off: an image for
	// Run, with no network.
	Init string
}

// BuildInitramfs writes an initramfs for img to out: a static busybox with
// its applets, guestd, an init that mounts the usual file systems, loads
// the modules, brings up the network and mounts the 9p shares named on the
// kernel command line, and img's files.
func BuildInitramfs(ctx context.Context, img Image, out string) error {
	if err := buildInitramfs(ctx, img, out); err != nil {
		return fmt.Errorf("build initramfs %s: %w", out, err)
	}
	return nil
}

func buildInitramfs(ctx context.Context, img Image, out string) error {
	if img.Kernel == nil {
		return errors.New("no kernel")
	}
	busybox, err := StaticBusybox()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(out), ".initramfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	var a initramfs.Archive
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/var", "/mnt", "/etc/init.d"} {
		a.AddDir(d, 0o755)
	}
	a.AddDir("/tmp", 0o1777)
	a.AddDir("/root", 0o700)
	// The kernel opens /dev/console for init before devtmpfs is mounted.
	a.AddCharDevice("/dev/console", 0o600, 5, 1)
	a.AddCharDevice("/dev/null", 0o666, 1, 3)

	a.AddHostFile("/bin/busybox", busybox, 0o755)
	applets, err := busyboxApplets(ctx, busybox)
	if err != nil {
		return err
	}
	for _, p := range applets {
		if p != "bin/busybox" {
			a.AddSymlink(p, "/bin/busybox")
		}
	}
	a.AddSymlink("/init", "/bin/busybox")

	tab := inittab
	if img.Init != "" {
		a.AddFile("/etc/init.d/run", []byte(img.Init), 0o755)
		tab = runInittab
	} else {
		guestd := filepath.Join(work, "guestd")
		if err := buildGuestd(ctx, guestd); err != nil {
			return err
		}
		a.AddHostFile("/sbin/guestd", guestd, 0o755)
	}

	k := img.Kernel
	mods, err := moduleFiles(k.ModulesDir, append(append([]string(nil), BaseModules...), img.Modules...))
	if err != nil {
		return err
	}
	guestModules := path.Join("/lib/modules", k.Release)
	// Compressed modules (trixie's .ko.xz) go in decompressed: busybox
	// insmod hands the kernel the file's bytes as they are.
	var loaded []string
	for i, m := range mods {
		host := filepath.Join(k.ModulesDir, filepath.FromSlash(m))
		if plain, ok := strings.CutSuffix(m, ".xz"); ok {
			dst := filepath.Join(work, fmt.Sprintf("module%d.ko", i))
			if err := unxzFile(ctx, host, dst); err != nil {
				return err
			}
			m, host = plain, dst
		}
		a.AddHostFile(path.Join(guestModules, m), host, 0o644)
		loaded = append(loaded, m)
	}
	// With modules.dep, busybox modprobe finds what the image holds.
	for _, f := range []string{"modules.dep", "modules.builtin", "modules.order"} {
		data, err := os.ReadFile(filepath.Join(k.ModulesDir, f))
		if err != nil {
			continue
		}
		a.AddFile(path.Join(guestModules, f), []byte(strings.ReplaceAll(string(data), ".ko.xz", ".ko")), 0o644)
	}

	a.AddFile("/etc/inittab", []byte(tab), 0o644)
	a.AddFile("/etc/init.d/rcS", []byte(rcS(guestModules, loaded)), 0o755)
	a.AddFile("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	a.AddFile("/etc/group", []byte("root:x:0:\n"), 0o644)
	a.AddFile("/etc/hosts", []byte("127.0.0.1\tlocalhost\n10.0.2.2\thost\n"), 0o644)

	for guest, host := range img.Files {
		if !path.IsAbs(guest) {
			return fmt.Errorf("guest path %q of %s is not absolute", guest, host)
		}
		a.AddHostFile(guest, host, 0)
	}

	f, err := os.CreateTemp(filepath.Dir(out), ".initramfs-*.cpio")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := a.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}

// inittab runs rcS, then keeps guestd running. busybox init, as PID 1,
// reaps orphans.
const inittab = `::sysinit:/etc/init.d/rcS
::respawn:/sbin/guestd
::ctrlaltdel:/sbin/poweroff
::shutdown:/bin/sync
`

// runInittab runs rcS, then Image.Init once, then powers off.
const runInittab = `::sysinit:/etc/init.d/rcS
::once:/bin/sh -c '/etc/init.d/run; poweroff -f'
::ctrlaltdel:/sbin/poweroff
::shutdown:/bin/sync
`

// rcS returns the boot script: mounts, modules (files relative to
// modDir, in load order), network and 9p shares.
func rcS(modDir string, modules []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
# tmpfs on /tmp, /run and /var, keeping what the image put there.
mkdir -p /.stage
for spec in /tmp:1777 /run:755 /var:755; do
	dir=${spec%:*}
	mount -t tmpfs -o mode=${spec#*:} tmpfs /.stage
	cp -a "$dir"/. /.stage/
	mount -o move /.stage "$dir"
done
rmdir /.stage
mkdir -p /var/lib /var/cache /var/log /var/tmp /var/run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null

`)
	for _, m := range modules {
		fmt.Fprintf(&b, "echo 'rcS: insmod %s'\ninsmod %s/%s || echo 'rcS: insmod %s failed'\n", moduleName(m), modDir, m, moduleName(m))
	}
	b.WriteString(`
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "rcS: eth0 10.0.2.15/24 via 10.0.2.2"

# kcare.share=TAG:/guest/path, once per share.
for word in $(cat /proc/cmdline); do
	case "$word" in
	kcare.share=*:*)
		spec=${word#kcare.share=}
		tag=${spec%%:*}
		dir=${spec#*:}
		mkdir -p "$dir"
		if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "$tag" "$dir"; then
			echo "rcS: mounted 9p $tag on $dir"
		else
			echo "rcS: mount 9p $tag on $dir failed"
		fi
		;;
	esac
done
echo "rcS: done"
`)
	return b.String()
}

// moduleFiles returns the files of names and their dependencies, relative
// to modulesDir, in load order.
func moduleFiles(modulesDir string, names []string) ([]string, error) {
	depData, err := os.ReadFile(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("%w (run depmod on the kernel tree)", err)
	}
	deps, err := parseModulesDep(depData)
	if err != nil {
		return nil, err
	}
	builtinData, err := os.ReadFile(filepath.Join(modulesDir, "modules.builtin"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return loadOrder(names, deps, parseBuiltin(builtinData))
}

// StaticBusybox returns the path of a statically linked busybox on the
// host, or an error saying to install busybox-static.
func StaticBusybox() (string, error) {
	p, err := exec.LookPath("busybox")
	if err != nil {
		if _, serr := os.Stat("/bin/busybox"); serr != nil {
			return "", errors.New("busybox not found; install busybox-static")
		}
		p = "/bin/busybox"
	}
	static, err := isStatic(p)
	if err != nil {
		return "", fmt.Errorf("busybox at %s: %w; install busybox-static", p, err)
	}
	if !static {
		return "", fmt.Errorf("busybox at %s is dynamically linked; install busybox-static", p)
	}
	return p, nil
}

// isStatic reports whether the ELF executable at path needs no dynamic loader.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// busyboxApplets returns where each applet belongs, such as "sbin/ip".
func busyboxApplets(ctx context.Context, busybox string) ([]string, error) {
	out, err := exec.CommandContext(ctx, busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list-full: %w", err)
	}
	var applets []string
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			applets = append(applets, line)
		}
	}
	if len(applets) == 0 {
		return nil, errors.New("busybox --list-full listed no applets")
	}
	return applets, nil
}

// buildGuestd builds the static guestd binary to out.
func buildGuestd(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, guestdPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", guestdPackage, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// unxzFile decompresses an xz file (a trixie module) to dst.
func unxzFile(ctx context.Context, src, dst string) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, "xz", "--decompress", "--stdout", src)
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("xz -d %s: %w: %s (install xz-utils)", src, err, strings.TrimSpace(stderr.String()))
	}
	return out.Close()
}
