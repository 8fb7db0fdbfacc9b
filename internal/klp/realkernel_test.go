package klp

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kcare/kcare/internal/kbuild"
)

// These tests build real livepatch modules against the Debian kernel's
// headers (KCARE_TEST_HEADERS), resolve them against that kernel's
// /proc/kallsyms (KCARE_TEST_KALLSYMS, taken by `go run
// ./test/vm/fetchkernel -kallsyms`) and its binfmt_misc.ko, and read the
// result back with debug/elf and readelf.

// need returns the environment variable name, skipping the test when it is
// unset, or failing it in CI.
func need(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set (make test sets it: go run ./test/vm/fetchkernel -kallsyms)", name)
		}
		t.Skipf("%s is not set", name)
	}
	return v
}

type realKernel struct {
	headers  kbuild.Headers
	exports  Exports
	kallsyms map[string]*Table
	binfmtKo string // binfmt_misc.ko of the image package
}

var (
	rkOnce sync.Once
	rk     *realKernel
	rkErr  error
)

func testKernel(t *testing.T) *realKernel {
	t.Helper()
	for _, v := range []string{"KCARE_TEST_HEADERS", "KCARE_TEST_VMLINUZ", "KCARE_TEST_RELEASE", "KCARE_TEST_KALLSYMS"} {
		need(t, v)
	}
	k, err := benchKernel()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// benchKernel reads the test kernel's headers, exports and kallsyms once.
func benchKernel() (*realKernel, error) {
	rkOnce.Do(func() {
		headers := os.Getenv("KCARE_TEST_HEADERS")
		rk = &realKernel{}
		rk.headers, rkErr = kbuild.FindHeaders(headers)
		if rkErr != nil {
			return
		}
		var data []byte
		if data, rkErr = os.ReadFile(filepath.Join(headers, "Module.symvers")); rkErr != nil {
			return
		}
		if rk.exports, rkErr = ParseSymvers(data, "Module.symvers"); rkErr != nil {
			return
		}
		if data, rkErr = os.ReadFile(os.Getenv("KCARE_TEST_KALLSYMS")); rkErr != nil {
			return
		}
		if rk.kallsyms, rkErr = ParseKallsyms(data, "kallsyms"); rkErr != nil {
			return
		}
		root := filepath.Dir(filepath.Dir(os.Getenv("KCARE_TEST_VMLINUZ")))
		rk.binfmtKo = filepath.Join(root, "lib/modules", os.Getenv("KCARE_TEST_RELEASE"), "kernel/fs/binfmt_misc.ko")
	})
	return rk, rkErr
}

var (
	builtMu sync.Mutex
	built   = map[string][]byte{}
)

// build builds the livepatch in src with modpost's undefined-symbol
// errors turned into warnings, and returns the .ko; each source and
// defines once per test binary.
func build(t *testing.T, k *realKernel, src, name string, defines ...string) []byte {
	t.Helper()
	key := strings.Join(append([]string{src, name}, defines...), " ")
	builtMu.Lock()
	defer builtMu.Unlock()
	if ko, ok := built[key]; ok {
		return ko
	}
	dir, err := os.MkdirTemp("", "klp-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, name+".ko")
	err = kbuild.Build(context.Background(), kbuild.Options{
		Headers: k.headers, Src: src, Name: name, Defines: defines, Out: out,
		Files: map[string][]byte{HeaderPath: Header}, AllowUndefined: true,
	})
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	ko, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	built[key] = ko
	return ko
}

func (k *realKernel) options(objects ...string) Options {
	tables := map[string]*Table{Vmlinux: k.kallsyms[Vmlinux]}
	for _, o := range objects {
		tables[o] = k.kallsyms[o]
	}
	return Options{Exports: k.exports, Tables: tables, Objects: objects}
}

// relocRec is one relocation as an independent reader (debug/elf) sees it.
type relocRec struct {
	Rela   string // the relocation section
	Target string // the section it applies to
	Off    uint64
	Type   elf.R_X86_64
	Sym    string
	Addend int64
}

type elfView struct {
	f      *elf.File
	syms   []elf.Symbol // index i is symbol i+1
	relocs []relocRec
}

func readELF(t *testing.T, ko []byte) *elfView {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		t.Fatalf("debug/elf cannot read the module: %v", err)
	}
	v := &elfView{f: f}
	v.syms, err = f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA {
			continue
		}
		data, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+24 <= len(data); off += 24 {
			info := binary.LittleEndian.Uint64(data[off+8:])
			idx := elf.R_SYM64(info)
			sym := v.syms[idx-1]
			name := sym.Name
			if elf.ST_TYPE(sym.Info) == elf.STT_SECTION {
				name = f.Sections[sym.Section].Name
			}
			v.relocs = append(v.relocs, relocRec{
				Rela: s.Name, Target: f.Sections[s.Info].Name,
				Off: binary.LittleEndian.Uint64(data[off:]), Type: elf.R_X86_64(elf.R_TYPE64(info)),
				Sym: name, Addend: int64(binary.LittleEndian.Uint64(data[off+16:])),
			})
		}
	}
	return v
}

func sortRecs(rs []relocRec) {
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.Target != b.Target {
			return a.Target < b.Target
		}
		return a.Off < b.Off
	})
}

// checkConverted checks a converted module against its original: every
// relocation is still there, applying to the same place, now naming the
// livepatch symbol where the original named a resolved one; those that
// the kernel applies moved into .klp.rela.OBJECT.SECTION sections; every
// livepatch symbol is SHN_LIVEPATCH; readelf reads the file cleanly.
func checkConverted(t *testing.T, k *realKernel, orig, conv []byte, res *Result) {
	t.Helper()
	rename := map[string]string{}
	object := map[string]string{}
	for _, r := range res.Symbols {
		rename[r.Name] = r.KlpName()
		object[r.KlpName()] = r.Object
	}
	before, after := readELF(t, orig), readELF(t, conv)
	alloc := map[string]bool{}
	for _, s := range before.f.Sections {
		alloc[s.Name] = s.Flags&elf.SHF_ALLOC != 0
	}
	var want, got []relocRec
	for _, r := range before.relocs {
		if n, ok := rename[r.Sym]; ok {
			r.Sym = n
			if alloc[r.Target] {
				r.Rela = ".klp.rela." + object[n] + "." + r.Target
			}
		}
		want = append(want, r)
	}
	got = append(got, after.relocs...)
	sortRecs(want)
	sortRecs(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("relocations after conversion (-want +got):\n%s", diff)
	}

	symtab := 0
	for i, s := range after.f.Sections {
		if s.Type == elf.SHT_SYMTAB {
			symtab = i
		}
		if s.Name == markerSection {
			t.Errorf("converted module still has %s", markerSection)
		}
		if !strings.HasPrefix(s.Name, ".klp.rela.") {
			if s.Flags&SHF_RELA_LIVEPATCH != 0 {
				t.Errorf("section %s has SHF_RELA_LIVEPATCH", s.Name)
			}
			continue
		}
		wantFlags := elf.SHF_ALLOC | elf.SHF_INFO_LINK | SHF_RELA_LIVEPATCH
		target := after.f.Sections[s.Info].Name
		if s.Type != elf.SHT_RELA || s.Flags != wantFlags || s.Entsize != 24 || s.Addralign != 8 ||
			!strings.HasSuffix(s.Name, "."+target) {
			t.Errorf("%s: type %v flags %#x entsize %d align %d applies to %s; want SHT_RELA, %#x, 24, 8, the section its name ends with",
				s.Name, s.Type, uint64(s.Flags), s.Entsize, s.Addralign, target, uint64(wantFlags))
		}
	}
	for i, s := range after.f.Sections {
		if s.Type == elf.SHT_RELA && int(s.Link) != symtab {
			t.Errorf("section %d %s links to %d, want the symbol table %d", i, s.Name, s.Link, symtab)
		}
	}
	for _, s := range after.syms {
		isKlp := strings.HasPrefix(s.Name, ".klp.sym.")
		switch {
		case isKlp && (s.Section != SHN_LIVEPATCH || elf.ST_BIND(s.Info) != elf.STB_GLOBAL):
			t.Errorf("%s: section %#x bind %v; want SHN_LIVEPATCH, GLOBAL", s.Name, uint16(s.Section), elf.ST_BIND(s.Info))
		case !isKlp && s.Section == SHN_LIVEPATCH:
			t.Errorf("%s is SHN_LIVEPATCH but not named .klp.sym.*", s.Name)
		case s.Section == elf.SHN_UNDEF && s.Name != "":
			if _, ok := k.exports[s.Name]; !ok {
				t.Errorf("undefined symbol %s is not exported and was not converted", s.Name)
			}
		}
	}
	for _, r := range after.relocs {
		if strings.HasPrefix(r.Rela, ".klp.rela.") != strings.HasPrefix(r.Sym, ".klp.sym.") && alloc[r.Target] {
			t.Errorf("relocation %+v: in %s but refers to %s", r, r.Rela, r.Sym)
		}
	}

	readelf, err := exec.LookPath("readelf")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("readelf not found (install binutils)")
		}
		return
	}
	path := filepath.Join(t.TempDir(), "conv.ko")
	os.WriteFile(path, conv, 0o644)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(readelf, "-W", "-S", "-s", "-r", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("readelf on the converted module: %v\n%s", err, stderr.String())
	}
}

func klpSections(t *testing.T, ko []byte) []string {
	t.Helper()
	var names []string
	for _, s := range readELF(t, ko).f.Sections {
		if strings.HasPrefix(s.Name, ".klp.") {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	return names
}

func resolvedSummary(rs []Resolved) []string {
	var out []string
	for _, r := range rs {
		var secs []string
		for _, s := range sortedKeys(r.Relocs) {
			secs = append(secs, fmt.Sprintf("%s:%d", s, r.Relocs[s]))
		}
		out = append(out, fmt.Sprintf("%s explicit=%v %s", r.KlpName(), r.Given != "", strings.Join(secs, ",")))
	}
	sort.Strings(out)
	return out
}

// TestConvertVmlinux converts the end-to-end klp fixture: non-exported
// functions, variables, a static key and a duplicated name chosen by a
// marker, referred to from .text, .data, .rodata and __jump_table.
func TestConvertVmlinux(t *testing.T) {
	k := testKernel(t)
	ko := build(t, k, "../../testdata/livepatch/klp", "kcare_test_klp")
	res, err := Convert(ko, k.options())
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	want := []string{
		".klp.sym.vmlinux._acpi_module_name,2 explicit=true .text:1",
		".klp.sym.vmlinux.get_cmdline,0 explicit=false .rodata:1",
		".klp.sym.vmlinux.saved_command_line,0 explicit=false .data:1",
		".klp.sym.vmlinux.sched_schedstats,0 explicit=false __jump_table:1",
		".klp.sym.vmlinux.skip_atoi,0 explicit=false .text:1",
	}
	if diff := cmp.Diff(want, resolvedSummary(res.Symbols)); diff != "" {
		t.Errorf("resolved symbols (-want +got):\n%s", diff)
	}
	wantSecs := []string{".klp.rela.vmlinux..data", ".klp.rela.vmlinux..rodata", ".klp.rela.vmlinux..text", ".klp.rela.vmlinux.__jump_table"}
	if diff := cmp.Diff(wantSecs, klpSections(t, res.Module)); diff != "" {
		t.Errorf("klp sections (-want +got):\n%s", diff)
	}
	checkConverted(t, k, ko, res.Module, res)

	// What `kcare-build verify` lists.
	rels, err := Relocations(res.Module)
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != 5 {
		t.Errorf("Relocations: %d, want 5: %+v", len(rels), rels)
	}

	// The same module converts to the same bytes, and a converted module
	// is refused rather than converted twice.
	again, err := Convert(ko, k.options())
	if err != nil || !bytes.Equal(again.Module, res.Module) {
		t.Errorf("second conversion differs (err %v)", err)
	}
	if _, err := Convert(res.Module, k.options()); !errors.Is(err, ErrConverted) {
		t.Errorf("Convert(converted) = %v, want ErrConverted", err)
	}
}

// TestConvertModuleObject converts the module-object fixture against
// binfmt_misc's own .ko, and against the kallsyms dump of a guest that had
// it loaded: both give the same module.
func TestConvertModuleObject(t *testing.T) {
	k := testKernel(t)
	koData, err := os.ReadFile(k.binfmtKo)
	if err != nil {
		t.Fatalf("the image package's binfmt_misc: %v", err)
	}
	fromKo, err := ModuleTable("binfmt_misc", koData, "binfmt_misc.ko")
	if err != nil {
		t.Fatal(err)
	}
	fromKallsyms := k.kallsyms["binfmt_misc"]
	if fromKallsyms == nil {
		t.Fatal("the kallsyms dump lists no [binfmt_misc] symbols")
	}
	if diff := cmp.Diff(fromKallsyms.Names(), fromKo.Names()); diff != "" {
		t.Errorf("binfmt_misc symbols, kallsyms (-) and its .ko (+):\n%s", diff)
	}

	ko := build(t, k, "../../testdata/livepatch/klpmod", "kcare_test_klpmod")
	opts := k.options("binfmt_misc")
	res, err := Convert(ko, opts)
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	want := []string{
		".klp.sym.binfmt_misc.enabled,0 explicit=false .text:1",
		".klp.sym.binfmt_misc.entries,0 explicit=false .text:3",
		".klp.sym.binfmt_misc.entries_lock,0 explicit=false .text:2",
	}
	if diff := cmp.Diff(want, resolvedSummary(res.Symbols)); diff != "" {
		t.Errorf("resolved symbols (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{".klp.rela.binfmt_misc..text"}, klpSections(t, res.Module)); diff != "" {
		t.Errorf("klp sections (-want +got):\n%s", diff)
	}
	checkConverted(t, k, ko, res.Module, res)

	opts.Tables["binfmt_misc"] = fromKo
	res2, err := Convert(ko, opts)
	if err != nil || !bytes.Equal(res2.Module, res.Module) {
		t.Errorf("resolved against binfmt_misc.ko: err %v, same module %v; want the same module as from kallsyms", err, err == nil && bytes.Equal(res2.Module, res.Module))
	}

	// Without the object, the names are not looked up in it, but the
	// error says where they are.
	noObject := k.options()
	noObject.Tables["binfmt_misc"] = fromKallsyms
	if _, err := Convert(ko, noObject); !errors.Is(err, ErrUnresolved) || !strings.Contains(err.Error(),
		"entries_lock: unresolved symbol: not exported, and not in kallsyms; module binfmt_misc has it: is it an object the patch patches (--object)?") {
		t.Errorf("Convert without binfmt_misc = %v, want ErrUnresolved naming entries_lock and binfmt_misc", err)
	}
}

// TestConvertRefusals builds the sources kcare-build must refuse and
// checks each refusal's type and message.
func TestConvertRefusals(t *testing.T) {
	k := testKernel(t)
	tests := []struct {
		name    string
		kcase   string
		objects []string
		sympos  []Sympos
		err     error
		msg     string
	}{
		{"duplicated_name", "1", nil, nil, ErrAmbiguous,
			"_acpi_module_name: ambiguous symbol: 107 symbols of that name in vmlinux (1: d ffffffff"},
		{"duplicated_name_flag_out_of_range", "1", nil, []Sympos{{Name: "_acpi_module_name", Pos: 108, From: "--sympos"}}, ErrBadSympos,
			"_acpi_module_name: bad symbol position: _acpi_module_name=108 (--sympos): vmlinux has 107 symbols of that name"},
		{"unknown_symbol", "2", nil, nil, ErrUnresolved,
			"kcare_no_such_symbol: unresolved symbol: not exported, and not in kallsyms"},
		{"custom_section", "3", nil, nil, ErrUnsupportedSection,
			"saved_command_line: unsupported section kcare_table: kcare-build does not know when the kernel reads this section"},
		{"module_symbol_from_init", "4", []string{"binfmt_misc"}, nil, ErrUnsupportedSection,
			"enabled: unsupported section .init.text: init sections are freed before binfmt_misc may load"},
		{"marker_out_of_range", "5", nil, nil, ErrBadSympos,
			"_acpi_module_name: bad symbol position: _acpi_module_name=1000 (KCARE_SYMPOS in the source): vmlinux has 107 symbols"},
		{"marker_and_flag_disagree", "5", nil, []Sympos{{Name: "_acpi_module_name", Pos: 3, From: "--sympos"}}, ErrBadSympos,
			"_acpi_module_name: bad symbol position: given as _acpi_module_name=3 (--sympos) and _acpi_module_name=1000 (KCARE_SYMPOS in the source)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ko := build(t, k, "testdata/refuse", "kcare_refuse", "KCARE_CASE="+tt.kcase)
			opts := k.options(tt.objects...)
			opts.Sympos = tt.sympos
			_, err := Convert(ko, opts)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Convert = %v\nwant %v containing %q", err, tt.err, tt.msg)
			}
		})
	}
}

// TestConvertChoices checks the author's choices on the fixture module:
// flags that agree with its marker, contradict it, are not needed, or
// name nothing, and a build without any symbol table.
func TestConvertChoices(t *testing.T) {
	k := testKernel(t)
	ko := build(t, k, "../../testdata/livepatch/klp", "kcare_test_klp")
	tests := []struct {
		name   string
		sympos []string
		tables bool
		err    error
		msg    string
	}{
		{"agrees_with_marker", []string{"_acpi_module_name=2", "vmlinux:skip_atoi=1"}, true, nil, ""},
		{"contradicts_marker", []string{"_acpi_module_name=1"}, true, ErrBadSympos, "given as _acpi_module_name=1 (--sympos) and _acpi_module_name=2 (KCARE_SYMPOS in the source)"},
		{"exported", []string{"seq_printf=1"}, true, ErrBadSympos, "seq_printf: bad symbol position: seq_printf=1 (--sympos): vmlinux exports it"},
		{"unused", []string{"kcare_nothing=1"}, true, ErrBadSympos, "kcare_nothing=1 (--sympos) names no non-exported symbol the module refers to"},
		{"not_an_object", []string{"ext4:skip_atoi=1"}, true, ErrBadSympos, "ext4 is not an object the patch patches"},
		{"no_symbol_table", nil, false, ErrUnresolved, "get_cmdline: unresolved symbol: not exported, and no symbol table of the target kernel given (--kallsyms or --system-map)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := k.options()
			if !tt.tables {
				opts.Tables = nil
			}
			for _, s := range tt.sympos {
				c, err := ParseSympos(s, "--sympos")
				if err != nil {
					t.Fatal(err)
				}
				opts.Sympos = append(opts.Sympos, c)
			}
			res, err := Convert(ko, opts)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Convert: %v", err)
				}
				for _, r := range res.Symbols {
					if r.Name == "skip_atoi" && (r.Pos != 1 || r.Given != "--sympos") {
						t.Errorf("skip_atoi resolved %+v, want position 1 as given", r)
					}
				}
				return
			}
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Convert = %v\nwant %v containing %q", err, tt.err, tt.msg)
			}
		})
	}
}

// TestSystemMapMatchesKallsyms reads the dump's vmlinux part as a
// System.map (the same format, `nm -n` order) and resolves the fixture
// to the same module; with KCARE_TEST_SYSTEM_MAP (the -dbg package's real
// map, optional) it resolves against that too.
func TestSystemMapMatchesKallsyms(t *testing.T) {
	k := testKernel(t)
	ko := build(t, k, "../../testdata/livepatch/klp", "kcare_test_klp")
	want, err := Convert(ko, k.options())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(os.Getenv("KCARE_TEST_KALLSYMS"))
	if err != nil {
		t.Fatal(err)
	}
	var m bytes.Buffer
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.Contains(line, "\t[") {
			m.WriteString(line + "\n")
		}
	}
	maps := map[string][]byte{"kallsyms as System.map": m.Bytes()}
	if p := os.Getenv("KCARE_TEST_SYSTEM_MAP"); p != "" {
		if maps[p], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range maps {
		sm, err := ParseSystemMap(data, name)
		if err != nil {
			t.Fatal(err)
		}
		opts := k.options()
		opts.Tables = map[string]*Table{Vmlinux: sm}
		got, err := Convert(ko, opts)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got.Module, want.Module) {
			t.Errorf("%s: %v, want %v", name, resolvedSummary(got.Symbols), resolvedSummary(want.Symbols))
		}
	}
}

// BenchmarkConvert measures the rewrite of the klp fixture, and reading
// the kallsyms dump it resolves against.
func BenchmarkConvert(b *testing.B) {
	for _, v := range []string{"KCARE_TEST_HEADERS", "KCARE_TEST_KALLSYMS", "KCARE_TEST_VMLINUZ", "KCARE_TEST_RELEASE"} {
		if os.Getenv(v) == "" {
			b.Skipf("%s is not set", v)
		}
	}
	k, err := benchKernel()
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "kcare_test_klp.ko")
	if err := kbuild.Build(context.Background(), kbuild.Options{
		Headers: k.headers, Src: "../../testdata/livepatch/klp", Name: "kcare_test_klp", Out: out,
		Files: map[string][]byte{HeaderPath: Header}, AllowUndefined: true,
	}); err != nil {
		b.Fatal(err)
	}
	ko, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("convert", func(b *testing.B) {
		for b.Loop() {
			if _, err := Convert(ko, k.options()); err != nil {
				b.Fatal(err)
			}
		}
	})
	dump, err := os.ReadFile(os.Getenv("KCARE_TEST_KALLSYMS"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parse_kallsyms", func(b *testing.B) {
		b.SetBytes(int64(len(dump)))
		for b.Loop() {
			if _, err := ParseKallsyms(dump, "kallsyms"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
