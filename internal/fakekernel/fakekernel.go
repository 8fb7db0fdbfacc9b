// Package fakekernel is a small in-process kernel for unit tests: a fake
// /sys and /proc tree under a directory, and a module loader that acts on
// it the way the livepatch subsystem does (load, transition, atomic
// replace, disable, remove). It never touches the real kernel.
package fakekernel

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/kmod"
	"github.com/kcare/kcare/internal/taint"
)

// Release and BuildID are the identity the fake kernel reports.
const (
	Release = "6.1.0-56-amd64"
	BuildID = "5f2c3b0d9d2e5a2d1b7f7d1c0a9e8b7c6d5e4f30"
	Version = "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)\n"
)

// Kernel is a fake kernel rooted at Root.
type Kernel struct {
	Root string

	mu      sync.Mutex
	modules map[string]bool // loaded modules, true if livepatch
	warnOn  map[string]bool // modules whose load logs a kernel warning
	taint   taint.Mask
	warns   int
	stall   bool
	loads   int
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
}

// New makes the fake tree in root (which must exist) and starts the fake
// kernel's worker; Close stops it.
func New(root string, livepatch bool) (*Kernel, error) {
	files := map[string]string{
		"proc/sys/kernel/osrelease":      Release + "\n",
		"proc/version":                   Version,
		"proc/1/comm":                    "init\n",
		"proc/1/patch_state":             "-1\n",
		"proc/sys/kernel/random/boot_id": newBootID() + "\n",
		"proc/uptime":                    "12.34 20.51\n",
		"proc/sys/kernel/tainted":        "0\n",
		"sys/kernel/warn_count":          "0\n",
		"sys/kernel/oops_count":          "0\n",
	}
	for p, c := range files {
		if err := write(filepath.Join(root, p), c); err != nil {
			return nil, err
		}
	}
	if err := write(filepath.Join(root, "sys/kernel/notes"), string(Notes(BuildID))); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "sys/module"), 0o755); err != nil {
		return nil, err
	}
	if livepatch {
		if err := os.MkdirAll(filepath.Join(root, "sys/kernel/livepatch"), 0o755); err != nil {
			return nil, err
		}
	}
	k := &Kernel{Root: root, modules: map[string]bool{}, warnOn: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go k.run()
	return k, nil
}

// Close stops the fake kernel's worker. It may be called more than once.
func (k *Kernel) Close() {
	k.closing.Do(func() { close(k.stop) })
	<-k.done
}

// StallTransitions makes transitions started from now on never finish,
// with a task "pauser" (pid 4242) left unpatched, until reversed.
func (k *Kernel) StallTransitions(on bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stall = on
}

// WarnOnLoad makes loading the module name log a kernel warning, as a
// WARN in its init would: warn_count goes up and the taint gets W.
func (k *Kernel) WarnOnLoad(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.warnOn[name] = true
}

// Warn logs a kernel warning now.
func (k *Kernel) Warn() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.warn()
	k.writeHealth()
}

func (k *Kernel) warn() {
	k.warns++
	k.taint |= taint.Warn
}

// writeHealth writes the taint and the warning count. k.mu is held.
func (k *Kernel) writeHealth() {
	write(filepath.Join(k.Root, "proc/sys/kernel/tainted"), fmt.Sprintf("%d\n", k.taint))
	write(filepath.Join(k.Root, "sys/kernel/warn_count"), fmt.Sprintf("%d\n", k.warns))
}

// BootID returns the boot id of the fake kernel.
func (k *Kernel) BootID() string {
	b, _ := os.ReadFile(filepath.Join(k.Root, "proc/sys/kernel/random/boot_id"))
	return strings.TrimSpace(string(b))
}

// newBootID returns a random boot id, a UUID as the kernel writes it.
func newBootID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Loads reports how many times a module was loaded.
func (k *Kernel) Loads() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.loads
}

// Modules lists the loaded modules.
func (k *Kernel) Modules() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for m := range k.modules {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

func (k *Kernel) lpDir(name string) string {
	return filepath.Join(k.Root, "sys/kernel/livepatch", name)
}

// Load implements kmod.Loader.
func (k *Kernel) Load(ctx context.Context, image []byte) error {
	info, err := kmod.ReadInfo(image)
	if err != nil {
		return fmt.Errorf("finit_module: invalid module: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.modules[info.Name]; ok {
		return fmt.Errorf("finit_module: %w", kmod.ErrExists)
	}
	if info.Livepatch {
		if _, err := os.Stat(filepath.Join(k.Root, "sys/kernel/livepatch")); err != nil {
			return fmt.Errorf("finit_module: unknown symbol klp_enable_patch")
		}
	}
	k.modules[info.Name] = info.Livepatch
	k.loads++
	// A module built out of the kernel's tree and not signed with its
	// key, as every test module is.
	k.taint |= taint.OutOfTree | taint.Unsigned
	if info.Livepatch {
		k.taint |= taint.Livepatch
	}
	if k.warnOn[info.Name] {
		k.warn()
	}
	k.writeHealth()
	if err := os.MkdirAll(filepath.Join(k.Root, "sys/module", info.Name), 0o755); err != nil {
		return err
	}
	if !info.Livepatch {
		return nil
	}
	d := k.lpDir(info.Name)
	trans := "0\n"
	if k.stall {
		trans = "1\n"
		write(filepath.Join(k.Root, "proc/4242/comm"), "pauser\n")
		write(filepath.Join(k.Root, "proc/4242/patch_state"), "0\n")
		write(filepath.Join(k.Root, "proc/1/patch_state"), "1\n")
	}
	write(filepath.Join(d, "enabled"), "1\n")
	write(filepath.Join(d, "transition"), trans)
	if !k.stall {
		k.replaceOthers(info.Name)
	}
	return nil
}

// replaceOthers removes the livepatch directories of every patch but keep,
// as the kernel does for patches with replace set after a transition.
func (k *Kernel) replaceOthers(keep string) {
	ents, _ := os.ReadDir(filepath.Join(k.Root, "sys/kernel/livepatch"))
	for _, e := range ents {
		if e.Name() != keep {
			os.RemoveAll(k.lpDir(e.Name()))
		}
	}
}

// Unload implements kmod.Loader.
func (k *Kernel) Unload(ctx context.Context, name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.modules[name]; !ok {
		return fmt.Errorf("delete_module: %w", kmod.ErrAbsent)
	}
	if _, err := os.Stat(k.lpDir(name)); err == nil {
		return fmt.Errorf("delete_module: %w (livepatch still registered)", kmod.ErrBusy)
	}
	delete(k.modules, name)
	return os.RemoveAll(filepath.Join(k.Root, "sys/module", name))
}

// run plays the kernel's workqueue: a patch whose enabled was set to 0 is
// reversed or disabled and its directory removed.
func (k *Kernel) run() {
	defer close(k.done)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
		k.mu.Lock()
		ents, _ := os.ReadDir(filepath.Join(k.Root, "sys/kernel/livepatch"))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(k.lpDir(e.Name()), "enabled"))
			if err == nil && strings.TrimSpace(string(b)) == "0" {
				os.RemoveAll(k.lpDir(e.Name()))
				os.RemoveAll(filepath.Join(k.Root, "proc/4242"))
				write(filepath.Join(k.Root, "proc/1/patch_state"), "-1\n")
			}
		}
		k.mu.Unlock()
	}
}

func write(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// Notes returns an ELF note blob, as /sys/kernel/notes holds, with a Xen
// note and a GNU build-id note.
func Notes(buildID string) []byte {
	var b bytes.Buffer
	note := func(name string, typ uint32, desc []byte) {
		n := append([]byte(name), 0)
		binary.Write(&b, binary.LittleEndian, [3]uint32{uint32(len(n)), uint32(len(desc)), typ})
		b.Write(pad4(n))
		b.Write(pad4(desc))
	}
	note("Xen", 18, []byte{0, 0, 0, 0, 0, 0, 0, 0})
	id, err := hex.DecodeString(buildID)
	if err != nil {
		panic("fakekernel: bad build-id " + buildID)
	}
	note("GNU", 3, id)
	return b.Bytes()
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
