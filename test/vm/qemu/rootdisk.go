package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/initramfs"
)

// RootDiskModules are what BuildRootInitramfs loads to mount a root file
// system on a virtio disk: Debian builds them all as modules.
var RootDiskModules = []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4"}

// BuildRootInitramfs writes to out an initramfs that boots a whole
// system from a disk: it loads RootDiskModules, mounts the ext4 file
// system named by root= on the kernel command line (default /dev/vda)
// and switches to its /sbin/init. Boot it with Config.Disk and Append
// "root=/dev/vda"; guestd, if the system wants one, is the system's own
// business.
func BuildRootInitramfs(ctx context.Context, k *debkernel.Kernel, out string) error {
	if err := buildRootInitramfs(ctx, k, out); err != nil {
		return fmt.Errorf("build root initramfs %s: %w", out, err)
	}
	return nil
}

func buildRootInitramfs(ctx context.Context, k *debkernel.Kernel, out string) error {
	if k == nil {
		return errors.New("no kernel")
	}
	busybox, err := StaticBusybox()
	if err != nil {
		return err
	}
	var a initramfs.Archive
	for _, d := range []string{"/dev", "/proc", "/sys", "/newroot", "/sbin", "/usr/bin", "/usr/sbin"} {
		a.AddDir(d, 0o755)
	}
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
	mods, err := moduleFiles(k.ModulesDir, RootDiskModules)
	if err != nil {
		return err
	}
	guestModules := path.Join("/lib/modules", k.Release)
	for _, m := range mods {
		a.AddHostFile(path.Join(guestModules, m), filepath.Join(k.ModulesDir, filepath.FromSlash(m)), 0o644)
	}
	for _, f := range []string{"modules.dep", "modules.builtin", "modules.order"} {
		if _, err := os.Stat(filepath.Join(k.ModulesDir, f)); err == nil {
			a.AddHostFile(path.Join(guestModules, f), filepath.Join(k.ModulesDir, f), 0o644)
		}
	}
	a.AddFile("/init", []byte(rootInit(guestModules, mods)), 0o755)

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

// rootInit is the initramfs's /init: modules, mount root=, switch_root.
func rootInit(modDir string, modules []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod %s/%s || echo 'initramfs: insmod %s failed'\n", modDir, m, moduleName(m))
	}
	b.WriteString(`
root=/dev/vda
for word in $(cat /proc/cmdline); do
	case "$word" in
	root=/dev/*) root=${word#root=} ;;
	esac
done
# Waiting up to 10s for the root disk to appear.
i=0
while [ ! -b "$root" ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
if ! mount -t ext4 -o rw "$root" /newroot; then
	echo "initramfs: cannot mount $root; powering off"
	poweroff -f
fi
echo "initramfs: switching to $root"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
`)
	return b.String()
}
