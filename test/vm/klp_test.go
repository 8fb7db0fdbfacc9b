package vm_test

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/klp"
	"github.com/kcare/kcare/test/vm/fixture"
)

// The klp fixtures (testdata/livepatch/klp and klpmod) reach what the
// kernel does not export, through livepatch relocations kcare-build made.
// Each check follows the kernel selftests' order: effect absent, load,
// transition 0, effect present, disable and unload, effect absent, and
// the kernel's own livepatch log.

// acpiModuleName returns the string at the pos-th _acpi_module_name of
// the kernel's kallsyms, read from the vmlinux image: what the klp
// fixture must print if kcare-build resolved the position right.
func acpiModuleName(t *testing.T, f *fixture.Fixture, pos int) string {
	t.Helper()
	dump, err := os.ReadFile(f.Kallsyms)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := klp.ParseKallsyms(dump, f.Kallsyms)
	if err != nil {
		t.Fatal(err)
	}
	v := tables[klp.Vmlinux]
	names, text := v.Lookup("_acpi_module_name"), v.Lookup("_text")
	if len(names) < pos || len(text) != 1 {
		t.Fatalf("kallsyms: %d _acpi_module_name and %d _text symbols; want %d or more and 1", len(names), len(text), pos)
	}
	img, err := elf.Open(f.Kernel.Vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	// The running kernel may sit elsewhere than it was linked (KASLR):
	// _text is at the start of the first executable segment.
	var delta uint64
	for _, p := range img.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			delta = text[0].Addr - p.Vaddr
			break
		}
	}
	addr := names[pos-1].Addr - delta
	for _, p := range img.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr >= p.Vaddr+p.Filesz {
			continue
		}
		buf := make([]byte, 64)
		n, _ := p.ReadAt(buf, int64(addr-p.Vaddr))
		s, _, ok := bytes.Cut(buf[:n], []byte{0})
		if !ok || len(s) == 0 {
			t.Fatalf("no string at _acpi_module_name #%d (%#x) in %s", pos, addr, f.Kernel.Vmlinux)
		}
		return string(s)
	}
	t.Fatalf("_acpi_module_name #%d (%#x) is in no segment of %s", pos, addr, f.Kernel.Vmlinux)
	return ""
}

// testKlpVmlinux applies the vmlinux klp fixture and checks each
// non-exported reference through its effect on /proc/cmdline.
func testKlpVmlinux(t *testing.T, g *guest, f *fixture.Fixture) {
	acpi := acpiModuleName(t, f, 2)
	if other := acpiModuleName(t, f, 1); other == acpi {
		t.Fatalf("_acpi_module_name #1 and #2 both read %q: the fixture cannot tell positions apart", acpi)
	}
	orig := g.cmdline()
	if !strings.Contains(orig, "console=ttyS0") || strings.Contains(orig, "kcare-klp") {
		t.Fatalf("/proc/cmdline before = %q, want the kernel's own", orig)
	}
	want := func(schedstats int) string {
		return fmt.Sprintf("kcare-klp argv=cat /proc/cmdline num=4711 acpi=%s schedstats=%d cmdline=%s\n",
			acpi, schedstats, strings.TrimSuffix(orig, "\n"))
	}
	g.ok("echo 0 > /proc/sys/kernel/sched_schedstats")
	g.klpLog()

	if r := g.kcarectl("--apply /mnt/host/klp.kcp"); r.Exit != 0 {
		t.Fatalf("kcarectl --apply klp.kcp: exit %d: %s", r.Exit, r.Stderr)
	}
	if got := g.ok("cat /sys/kernel/livepatch/kcare_test_klp/enabled /sys/kernel/livepatch/kcare_test_klp/transition"); got != "1\n0\n" {
		t.Errorf("kcare_test_klp enabled, transition = %q, want 1 and 0", got)
	}
	got := g.cmdline()
	if got != want(0) {
		t.Errorf("/proc/cmdline = %q\nwant %q", got, want(0))
	}
	t.Logf("patched /proc/cmdline: %q", got)
	// The static key is the kernel's: turning it on reaches the patch.
	g.ok("echo 1 > /proc/sys/kernel/sched_schedstats")
	if got := g.cmdline(); got != want(1) {
		t.Errorf("/proc/cmdline with sched_schedstats on = %q\nwant %q", got, want(1))
	}
	g.ok("echo 0 > /proc/sys/kernel/sched_schedstats")
	if got := g.cmdline(); got != want(0) {
		t.Errorf("/proc/cmdline with sched_schedstats off again = %q\nwant %q", got, want(0))
	}

	if r := g.kcarectl("--unload"); r.Exit != 0 {
		t.Fatalf("kcarectl --unload: exit %d: %s", r.Exit, r.Stderr)
	}
	g.wantModules("", "")
	if got := g.cmdline(); got != orig {
		t.Errorf("/proc/cmdline after unload = %q, want %q", got, orig)
	}
	wantLog(t, g.klpLog(),
		"livepatch: enabling patch 'kcare_test_klp'",
		"livepatch: 'kcare_test_klp': starting patching transition",
		"livepatch: 'kcare_test_klp': patching complete",
		"livepatch: 'kcare_test_klp': starting unpatching transition",
		"livepatch: 'kcare_test_klp': unpatching complete")
}

// binfmt drives binfmt_misc in the guest, mounted at /tmp/bm.
type binfmt struct {
	g    *guest
	path string // the module's .ko in the guest
}

func (b binfmt) load() {
	b.g.t.Helper()
	b.g.ok("insmod " + b.path + " && mkdir -p /tmp/bm && mount -t binfmt_misc binfmt_misc /tmp/bm")
}

func (b binfmt) unload() {
	b.g.t.Helper()
	b.g.ok("echo -1 > /tmp/bm/status; echo 1 > /tmp/bm/status; umount /tmp/bm && rmmod binfmt_misc")
}

func (b binfmt) status() string { b.g.t.Helper(); return b.g.ok("cat /tmp/bm/status") }

// checkPatched checks the patched status file, which reads binfmt_misc's
// static enabled flag and entries list.
func (b binfmt) checkPatched(t *testing.T) {
	t.Helper()
	if got, want := b.status(), "kcare-klp binfmt_misc enabled entries=0\n"; got != want {
		t.Errorf("binfmt_misc status = %q, want %q", got, want)
	}
	b.g.ok("echo ':kcare:E::kcare::/bin/true:' > /tmp/bm/register && echo 0 > /tmp/bm/status")
	if got, want := b.status(), "kcare-klp binfmt_misc disabled entries=1\n"; got != want {
		t.Errorf("binfmt_misc status after a register and a disable = %q, want %q", got, want)
	}
	b.g.ok("echo -1 > /tmp/bm/kcare && echo 1 > /tmp/bm/status")
}

// testKlpModuleLoadedFirst patches binfmt_misc while it is loaded.
func testKlpModuleLoadedFirst(t *testing.T, g *guest, f *fixture.Fixture) {
	requireKlpMod(t, f)
	b := binfmt{g: g, path: f.KlpModulePath()}
	b.load()
	defer b.unload()
	if got := b.status(); got != "enabled\n" {
		t.Fatalf("binfmt_misc status before = %q, want the module's own %q", got, "enabled\n")
	}
	g.klpLog()
	if r := g.kcarectl("--apply /mnt/host/klpmod.kcp"); r.Exit != 0 {
		t.Fatalf("kcarectl --apply klpmod.kcp: exit %d: %s", r.Exit, r.Stderr)
	}
	if got := g.ok("cat /sys/kernel/livepatch/kcare_test_klpmod/transition /sys/kernel/livepatch/kcare_test_klpmod/binfmt_misc/patched"); got != "0\n1\n" {
		t.Errorf("kcare_test_klpmod transition, binfmt_misc patched = %q, want 0 and 1", got)
	}
	b.checkPatched(t)
	if r := g.kcarectl("--unload"); r.Exit != 0 {
		t.Fatalf("kcarectl --unload: exit %d: %s", r.Exit, r.Stderr)
	}
	g.wantModules("", "")
	if got := b.status(); got != "enabled\n" {
		t.Errorf("binfmt_misc status after unload = %q, want %q", got, "enabled\n")
	}
	wantLog(t, g.klpLog(),
		"livepatch: enabling patch 'kcare_test_klpmod'",
		"livepatch: 'kcare_test_klpmod': starting patching transition",
		"livepatch: 'kcare_test_klpmod': patching complete",
		"livepatch: 'kcare_test_klpmod': starting unpatching transition",
		"livepatch: 'kcare_test_klpmod': unpatching complete")
}

// testKlpModuleLoadedLater applies the patch first; the kernel applies it
// to binfmt_misc, resolving its klp relocations, when the module loads.
// Once the module is removed while the patch stays, Debian 6.1's kernel
// refuses to load it again: its livepatch does not clear the relocations
// it wrote (upstream does since 6.3), and finds them taken. The module
// loads again once the patch is gone.
func testKlpModuleLoadedLater(t *testing.T, g *guest, f *fixture.Fixture) {
	requireKlpMod(t, f)
	b := binfmt{g: g, path: f.KlpModulePath()}
	if r := g.sh("grep -q '^binfmt_misc ' /proc/modules"); r.Exit == 0 {
		t.Fatal("binfmt_misc is loaded before the patch; want it absent")
	}
	g.klpLog()
	if r := g.kcarectl("--apply /mnt/host/klpmod.kcp"); r.Exit != 0 {
		t.Fatalf("kcarectl --apply klpmod.kcp: exit %d: %s", r.Exit, r.Stderr)
	}
	if got := g.ok("cat /sys/kernel/livepatch/kcare_test_klpmod/transition /sys/kernel/livepatch/kcare_test_klpmod/binfmt_misc/patched"); got != "0\n0\n" {
		t.Errorf("kcare_test_klpmod transition, binfmt_misc patched = %q, want 0 and 0 (module not loaded)", got)
	}
	b.load()
	if got := g.ok("cat /sys/kernel/livepatch/kcare_test_klpmod/binfmt_misc/patched"); got != "1\n" {
		t.Errorf("binfmt_misc patched after it loaded = %q, want 1", got)
	}
	b.checkPatched(t)

	b.unload()
	if r := g.sh("insmod " + b.path); r.Exit == 0 {
		t.Errorf("binfmt_misc loaded a second time under the patch; the kernel now clears klp relocations: update docs/patch-format.md")
		b.g.ok("rmmod binfmt_misc")
	}
	if r := g.kcarectl("--unload"); r.Exit != 0 {
		t.Fatalf("kcarectl --unload: exit %d: %s", r.Exit, r.Stderr)
	}
	g.wantModules("", "")
	b.load()
	defer b.unload()
	if got := b.status(); got != "enabled\n" {
		t.Errorf("binfmt_misc status after the patch is gone = %q, want %q", got, "enabled\n")
	}
	wantLog(t, g.klpLog(),
		"livepatch: enabling patch 'kcare_test_klpmod'",
		"livepatch: 'kcare_test_klpmod': starting patching transition",
		"livepatch: 'kcare_test_klpmod': patching complete",
		"livepatch: applying patch 'kcare_test_klpmod' to loading module 'binfmt_misc'",
		"livepatch: reverting patch 'kcare_test_klpmod' on unloading module 'binfmt_misc'",
		"livepatch: failed to initialize patch 'kcare_test_klpmod' for module 'binfmt_misc' (-8)",
		"livepatch: patch 'kcare_test_klpmod' failed for module 'binfmt_misc', refusing to load module 'binfmt_misc'",
		"livepatch: 'kcare_test_klpmod': starting unpatching transition",
		"livepatch: 'kcare_test_klpmod': unpatching complete")
}

// testKlpUnconverted loads the klp source built without the conversion:
// the kernel refuses it, naming the symbols it does not export (busybox
// insmod tries twice, finit_module then init_module: each line twice).
func testKlpUnconverted(t *testing.T, g *guest) {
	g.ok("dmesg -c >/dev/null")
	if r := g.sh("insmod /mnt/host/kcare_test_klpraw.ko"); r.Exit == 0 {
		g.sh("rmmod kcare_test_klpraw")
		t.Fatal("the kernel loaded the unconverted module")
	}
	log := g.ok("dmesg -c | grep 'kcare_test_klpraw: Unknown symbol' | sed 's/^\\[[ 0-9.]*\\] //' | sort -u")
	want := "kcare_test_klpraw: Unknown symbol _acpi_module_name (err -2)\n" +
		"kcare_test_klpraw: Unknown symbol get_cmdline (err -2)\n" +
		"kcare_test_klpraw: Unknown symbol saved_command_line (err -2)\n" +
		"kcare_test_klpraw: Unknown symbol sched_schedstats (err -2)\n" +
		"kcare_test_klpraw: Unknown symbol skip_atoi (err -2)\n"
	if log != want {
		t.Errorf("kernel log for the unconverted module:\n%s\nwant:\n%s", log, want)
	}
	g.wantModules("", "")
}

// requireKlpMod skips a module-object scenario on a kernel the fixture
// cannot patch: testdata/livepatch/klpmod is written against 6.1's
// binfmt_misc, and the suite runs on another family only when asked
// (make vmtest KERNEL=…); on bookworm-6.1 the fixture is always built.
func requireKlpMod(t *testing.T, f *fixture.Fixture) {
	t.Helper()
	if !f.KlpMod {
		t.Skipf("the module-object fixture patches 6.1's binfmt_misc; %s is %s", f.Kernel.Release, f.Kernel.Family())
	}
}
