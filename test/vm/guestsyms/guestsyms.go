// Package guestsyms dumps /proc/kallsyms of a test kernel, booted once in a
// QEMU guest, and caches the dump by the kernel's build-id:
//
//	<cache>/kallsyms/<build-id>.txt
//
// The dump is what an on-premises team gets with `cat /proc/kallsyms` as
// root on a host running the same build: every symbol of vmlinux in the
// kernel's own order (CONFIG_LIVEPATCH implies KALLSYMS_ALL) and the
// symbols of the loaded modules, tagged [module]. The guest loads the
// modules in Modules besides the base ones, so their symbols are listed too.
package guestsyms

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/kimage"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/qemu"
)

// Modules are loaded in the guest before the dump, so that the dump lists
// their symbols: the module the module-object fixture patches.
var Modules = []string{"binfmt_misc"}

// bootTimeout bounds the boot and the dump.
const bootTimeout = 3 * time.Minute

// Path returns where the dump of the kernel with buildID is cached.
func Path(cacheDir, buildID string) string {
	return filepath.Join(cacheDir, "kallsyms", buildID+".txt")
}

// Fetch returns the path of k's kallsyms dump in cacheDir, booting k in a
// guest to take it when it is not cached yet. logf reports progress.
func Fetch(ctx context.Context, cacheDir string, k *debkernel.Kernel, logf func(format string, args ...any)) (string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	image := k.Vmlinux
	if _, err := os.Stat(image); err != nil {
		image = k.Vmlinuz
	}
	id, err := kimage.IdentifyFile(image)
	if err != nil {
		return "", fmt.Errorf("kallsyms of %s: %w", k.Release, err)
	}
	path := Path(cacheDir, id.BuildID)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	logf("guestsyms: no kallsyms dump of %s (build-id %s) cached; booting it once", k.Release, id.BuildID)
	start := time.Now()
	dump, err := dumpGuest(ctx, k, image, id.BuildID)
	if err != nil {
		return "", fmt.Errorf("kallsyms of %s: %w", k.Release, err)
	}
	if err := writeAtomic(path, dump); err != nil {
		return "", fmt.Errorf("kallsyms of %s: %w", k.Release, err)
	}
	logf("guestsyms: %s: %d lines in %s", path, strings.Count(string(dump), "\n"), time.Since(start).Round(time.Millisecond))
	return path, nil
}

// dumpGuest boots image with a bare initramfs and reads /proc/kallsyms,
// after checking that the guest runs the build it was asked for.
func dumpGuest(ctx context.Context, k *debkernel.Kernel, image, buildID string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	work, err := os.MkdirTemp("", "kcare-kallsyms-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	initrd := filepath.Join(work, "initrd.cpio")
	if err := qemu.BuildInitramfs(ctx, qemu.Image{Kernel: k, Modules: Modules}, initrd); err != nil {
		return nil, err
	}
	vm, err := qemu.Start(ctx, qemu.Config{Kernel: image, Initrd: initrd, Isolated: true})
	if err != nil {
		return nil, err
	}
	defer vm.Stop()

	notes, err := vm.Run(ctx, "od", "-An", "-v", "-tx1", "/sys/kernel/notes")
	if err != nil || notes.Exit != 0 {
		return nil, fmt.Errorf("read the guest's /sys/kernel/notes: %v %s", err, notes.Stderr)
	}
	raw, err := hex.DecodeString(strings.Join(strings.Fields(notes.Stdout), ""))
	if err != nil {
		return nil, fmt.Errorf("parse od output of /sys/kernel/notes: %w", err)
	}
	got, err := kimage.ParseNotes(raw)
	if err != nil {
		return nil, fmt.Errorf("the guest's /sys/kernel/notes: %w", err)
	}
	if got != buildID {
		return nil, fmt.Errorf("the guest runs build-id %s, want %s", got, buildID)
	}
	for _, m := range Modules {
		if r, err := vm.Run(ctx, "grep", "-q", "^"+m+" ", "/proc/modules"); err != nil || r.Exit != 0 {
			return nil, fmt.Errorf("module %s is not loaded in the guest: %v", m, err)
		}
	}
	r, err := vm.Run(ctx, "cat", "/proc/kallsyms")
	if err != nil {
		return nil, err
	}
	if r.Exit != 0 {
		return nil, fmt.Errorf("cat /proc/kallsyms: exit %d: %s", r.Exit, r.Stderr)
	}
	if !strings.Contains(r.Stdout, " T cmdline_proc_show\n") && !strings.Contains(r.Stdout, " t cmdline_proc_show\n") {
		return nil, fmt.Errorf("the guest's /proc/kallsyms (%d bytes) lists no cmdline_proc_show", len(r.Stdout))
	}
	return []byte(r.Stdout), nil
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".kallsyms-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
