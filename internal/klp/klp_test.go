package klp

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSympos(t *testing.T) {
	tests := []struct {
		in   string
		want Sympos
		err  string
	}{
		{"_acpi_module_name=2", Sympos{Name: "_acpi_module_name", Pos: 2, From: "f"}, ""},
		{"binfmt_misc:enabled=1", Sympos{Object: "binfmt_misc", Name: "enabled", Pos: 1, From: "f"}, ""},
		{"vmlinux:bm_status_read.cold=0", Sympos{Object: "vmlinux", Name: "bm_status_read.cold", Pos: 0, From: "f"}, ""},
		{"enabled", Sympos{}, "want [OBJECT:]NAME=POS"},
		{"enabled=-1", Sympos{}, "not a number from 0 up"},
		{"enabled=x", Sympos{}, "not a number from 0 up"},
		{"=1", Sympos{}, "bad symbol name"},
		{"en abled=1", Sympos{}, "bad symbol name"},
		{"fs.ext4:x=1", Sympos{}, "bad object name"},
		{":x=1", Sympos{}, "bad object name"},
	}
	for _, tt := range tests {
		got, err := ParseSympos(tt.in, "f")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSympos(%q) = %+v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSympos(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseKallsyms(t *testing.T) {
	dump := "ffffffff81000000 T _text\n" +
		"ffffffff820fd320 d _acpi_module_name\n" +
		"ffffffff820fd328 d _acpi_module_name\n" +
		"ffffffff83317008 B saved_command_line\n" +
		"ffffffffc02670d0 t bm_status_read\t[binfmt_misc]\n" +
		"ffffffffc026c0c8 d enabled\t[binfmt_misc]\n"
	tables, err := ParseKallsyms([]byte(dump), "dump")
	if err != nil {
		t.Fatal(err)
	}
	v, m := tables[Vmlinux], tables["binfmt_misc"]
	if v.Len() != 4 || m.Len() != 2 || len(tables) != 2 {
		t.Fatalf("tables: vmlinux %d, binfmt_misc %d, %d tables; want 4, 2, 2", v.Len(), m.Len(), len(tables))
	}
	want := []Entry{{Addr: 0xffffffff820fd320, Type: 'd'}, {Addr: 0xffffffff820fd328, Type: 'd'}}
	if diff := cmp.Diff(want, v.Lookup("_acpi_module_name")); diff != "" {
		t.Errorf("_acpi_module_name (-want +got):\n%s", diff)
	}
	if v.Duplicates() != 1 || len(v.Lookup("enabled")) != 0 || len(m.Lookup("enabled")) != 1 {
		t.Errorf("duplicates %d, enabled in vmlinux %d, in binfmt_misc %d; want 1, 0, 1",
			v.Duplicates(), len(v.Lookup("enabled")), len(m.Lookup("enabled")))
	}
	for _, bad := range []string{
		"ffffffff81000000 T\n",
		"zz T _text\n",
		"ffffffff81000000 TT _text\n",
		"ffffffff81000000 t x\tbinfmt_misc\n",
		"ffffffff81000000 T _text\nffffffffc02670d0 t x\tbinfmt_misc]\n",
		"ffffffff81000000 T _text\nffffffffc02670d0 t x\t[binfmt_misc\n",
		"ffffffff81000000 T _text\nffffffffc02670d0 t x\t[]\n",
		"ffffffffc02670d0 t bm_status_read\t[binfmt_misc]\n", // no vmlinux symbols
	} {
		if _, err := ParseKallsyms([]byte(bad), "dump"); err == nil {
			t.Errorf("ParseKallsyms(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseSystemMap(t *testing.T) {
	placeholder := "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n"
	if _, err := ParseSystemMap([]byte(placeholder), "System.map-6.1.0-57-amd64"); err == nil ||
		!strings.Contains(err.Error(), "placeholder, not a real System.map") {
		t.Errorf("ParseSystemMap(Debian's placeholder) = %v, want a refusal", err)
	}
	var b strings.Builder
	b.WriteString("0000000000000000 A __per_cpu_start\n")
	b.WriteString("                 U undefined_thing\n")
	for i := range 1000 {
		b.WriteString("ffffffff81000000 t f\n")
		_ = i
	}
	b.WriteString("ffffffff83317008 B saved_command_line\n")
	m, err := ParseSystemMap([]byte(strings.Replace(b.String(), "                 U", "0000000000000000 U", 1)), "map")
	if err != nil {
		t.Fatal(err)
	}
	if m.Len() != 1001 || len(m.Lookup("__per_cpu_start")) != 0 || len(m.Lookup("undefined_thing")) != 0 || len(m.Lookup("f")) != 1000 {
		t.Errorf("System.map table: %d symbols; want 1001 without the absolute and undefined ones", m.Len())
	}
}

func TestParseSymvers(t *testing.T) {
	data := "0x619cb7dd\tsimple_read_from_buffer\tvmlinux\tEXPORT_SYMBOL\t\n" +
		"0x12345678\tfat_getattr\tfs/fat/fat\tEXPORT_SYMBOL_GPL\t\n" +
		"0x87654321\tnls_utf8_thing\tfs/nls/nls-utf8\tEXPORT_SYMBOL_NS\tNLS\n"
	ex, err := ParseSymvers([]byte(data), "Module.symvers")
	if err != nil {
		t.Fatal(err)
	}
	want := Exports{"simple_read_from_buffer": "vmlinux", "fat_getattr": "fat", "nls_utf8_thing": "nls_utf8"}
	if diff := cmp.Diff(want, ex); diff != "" {
		t.Errorf("exports (-want +got):\n%s", diff)
	}
	if _, err := ParseSymvers([]byte("simple_read_from_buffer vmlinux\n"), "x"); err == nil {
		t.Error("ParseSymvers(a line without tabs) succeeded")
	}
}

func TestPosition(t *testing.T) {
	core := Entry{Type: 't'}
	late := Entry{Type: 't', Late: true}
	tests := []struct {
		name     string
		entries  []Entry
		pos      int
		explicit bool
		want     int
		err      error
	}{
		{"unique", []Entry{core}, 0, false, 0, nil},
		{"unique_given_1", []Entry{core}, 1, true, 1, nil},
		{"unique_given_0", []Entry{core}, 0, true, 0, nil},
		{"two_not_given", []Entry{core, core}, 0, false, 0, ErrAmbiguous},
		{"two_given_2", []Entry{core, core}, 2, true, 2, nil},
		{"two_given_3", []Entry{core, core}, 3, true, 0, ErrBadSympos},
		{"two_given_0", []Entry{core, core}, 0, true, 0, ErrBadSympos},
		{"only_in_init", []Entry{late}, 0, false, 0, ErrUnresolved},
		{"init_before_it", []Entry{late, core}, 2, true, 0, ErrAmbiguous},
		{"init_after_it", []Entry{core, late}, 1, true, 1, nil},
		{"is_init", []Entry{core, late}, 2, true, 0, ErrAmbiguous},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := position("f", "binfmt_misc", tt.entries, Sympos{Name: "f", Pos: tt.pos, From: "test"}, tt.explicit)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("position = %d, %v; want %d, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"fs/fat/vfat":    "vfat",
		"nls-utf8.ko":    "nls_utf8",
		"binfmt_misc.ko": "binfmt_misc",
		"x/y.ko.xz":      "y",
		"vmlinux":        "vmlinux",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnsupportedTarget(t *testing.T) {
	x := elf.SHF_ALLOC | elf.SHF_EXECINSTR
	tests := []struct {
		obj, sec string
		flags    elf.SectionFlag
		ok       bool
	}{
		{"vmlinux", ".text", x, true},
		{"vmlinux", ".text.unlikely", x, true},
		{"vmlinux", ".init.text", x, true},
		{"binfmt_misc", ".init.text", x, false},
		{"binfmt_misc", ".text", x, true},
		{"vmlinux", ".data", elf.SHF_ALLOC | elf.SHF_WRITE, true},
		{"vmlinux", ".data..ro_after_init", elf.SHF_ALLOC | elf.SHF_WRITE, true},
		{"vmlinux", ".rodata.str1.1", elf.SHF_ALLOC, true},
		{"binfmt_misc", ".rodata", elf.SHF_ALLOC, true},
		{"vmlinux", "__jump_table", elf.SHF_ALLOC | elf.SHF_WRITE, true},
		{"binfmt_misc", "__jump_table", elf.SHF_ALLOC | elf.SHF_WRITE, false},
		{"vmlinux", ".altinstr_replacement", x, true},
		{"binfmt_misc", ".altinstr_replacement", x, false},
		{"vmlinux", ".altinstructions", elf.SHF_ALLOC, false},
		{"vmlinux", ".orc_unwind_ip", elf.SHF_ALLOC, false},
		{"vmlinux", "__bug_table", elf.SHF_ALLOC | elf.SHF_WRITE, false},
		{"vmlinux", "__mcount_loc", elf.SHF_ALLOC, false},
		{"vmlinux", "__patchable_function_entries", elf.SHF_ALLOC, false},
		{"vmlinux", ".static_call_sites", elf.SHF_ALLOC | elf.SHF_WRITE, false},
		{"vmlinux", "__ex_table", elf.SHF_ALLOC, false},
		{"vmlinux", "__ksymtab_gpl", elf.SHF_ALLOC, false},
		{"vmlinux", "kcare_table", elf.SHF_ALLOC | elf.SHF_WRITE, false},
	}
	for _, tt := range tests {
		why := unsupportedTarget(tt.obj, tt.sec, tt.flags)
		if (why == "") != tt.ok {
			t.Errorf("relocations for %s into %s: refused %q, want allowed %v", tt.obj, tt.sec, why, tt.ok)
		}
	}
}

// tinyObject is a hand-made relocatable object: a .text calling an
// undefined foo and bar, and a debugging section pointing at foo.
func tinyObject() *object {
	null := &section{}
	text := &section{name: ".text", hdr: elf.Section64{Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC | elf.SHF_EXECINSTR), Addralign: 16}, data: make([]byte, 16)}
	modinfo := &section{name: ".modinfo", hdr: elf.Section64{Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Addralign: 1}, data: []byte("livepatch=Y\x00")}
	debug := &section{name: ".debug_info", hdr: elf.Section64{Type: uint32(elf.SHT_PROGBITS), Addralign: 1}, data: make([]byte, 8)}
	strtab := &section{name: ".strtab", hdr: elf.Section64{Type: uint32(elf.SHT_STRTAB), Addralign: 1}}
	symtab := &section{name: ".symtab", hdr: elf.Section64{Type: uint32(elf.SHT_SYMTAB), Entsize: symSize, Addralign: 8}, link: strtab}
	shstrtab := &section{name: ".shstrtab", hdr: elf.Section64{Type: uint32(elf.SHT_STRTAB), Addralign: 1}}
	secSym := &symbol{info: elf.ST_INFO(elf.STB_LOCAL, elf.STT_SECTION), sec: text, name: ".text"}
	fn := &symbol{name: "livepatch_fn", info: elf.ST_INFO(elf.STB_LOCAL, elf.STT_FUNC), sec: text, size: 16}
	foo := &symbol{name: "foo", info: elf.ST_INFO(elf.STB_GLOBAL, elf.STT_NOTYPE)}
	bar := &symbol{name: "bar", info: elf.ST_INFO(elf.STB_GLOBAL, elf.STT_NOTYPE)}
	relaText := &section{name: ".rela.text", hdr: elf.Section64{Type: uint32(elf.SHT_RELA), Flags: uint64(elf.SHF_INFO_LINK), Entsize: relaSize, Addralign: 8}, link: symtab, info: text,
		relas: []*rela{{off: 1, sym: foo, typ: uint32(elf.R_X86_64_PLT32), addend: -4}, {off: 6, sym: bar, typ: uint32(elf.R_X86_64_PLT32), addend: -4}}}
	relaDebug := &section{name: ".rela.debug_info", hdr: elf.Section64{Type: uint32(elf.SHT_RELA), Flags: uint64(elf.SHF_INFO_LINK), Entsize: relaSize, Addralign: 8}, link: symtab, info: debug,
		relas: []*rela{{off: 0, sym: foo, typ: uint32(elf.R_X86_64_64)}, {off: 0, sym: secSym, typ: uint32(elf.R_X86_64_64)}}}
	o := &object{
		sections: []*section{null, text, relaText, modinfo, debug, relaDebug, symtab, strtab, shstrtab},
		syms:     []*symbol{{}, secSym, fn, foo, bar},
		symtab:   symtab,
		shstrtab: shstrtab,
	}
	copy(o.hdr.Ident[:], elf.ELFMAG)
	o.hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	o.hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	o.hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	o.hdr.Type = uint16(elf.ET_REL)
	o.hdr.Machine = uint16(elf.EM_X86_64)
	o.hdr.Version = uint32(elf.EV_CURRENT)
	o.hdr.Ehsize = ehdrSize
	o.hdr.Shentsize = shdrSize
	return o
}

func tinyModule(t testing.TB) []byte {
	t.Helper()
	b, err := tinyObject().write()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConvertTiny converts the hand-made object without a kernel: foo is
// resolved, bar is exported; the debugging relocation keeps its place but
// names the livepatch symbol.
func TestConvertTiny(t *testing.T) {
	ko := tinyModule(t)
	vmlinux := newTable(Vmlinux, "test")
	vmlinux.add("foo", Entry{Type: 't'})
	res, err := Convert(ko, Options{Exports: Exports{"bar": "vmlinux"}, Tables: map[string]*Table{Vmlinux: vmlinux}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Symbols) != 1 || res.Symbols[0].KlpName() != ".klp.sym.vmlinux.foo,0" || res.Symbols[0].Relocs[".text"] != 1 {
		t.Fatalf("resolved %+v, want foo in vmlinux at 0 with one .text relocation", res.Symbols)
	}
	f, err := elf.NewFile(bytes.NewReader(res.Module))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range f.Sections {
		names = append(names, s.Name)
	}
	want := []string{"", ".text", ".rela.text", ".modinfo", ".debug_info", ".rela.debug_info", ".symtab", ".strtab", ".shstrtab", ".klp.rela.vmlinux..text"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("sections (-want +got):\n%s", diff)
	}
	rels, err := Relocations(res.Module)
	if err != nil {
		t.Fatal(err)
	}
	wantRels := []Reloc{{Section: ".klp.rela.vmlinux..text", Target: ".text", Offset: 1, Type: elf.R_X86_64_PLT32, Symbol: ".klp.sym.vmlinux.foo,0", Addend: -4}}
	if diff := cmp.Diff(wantRels, rels); diff != "" {
		t.Errorf("Relocations (-want +got):\n%s", diff)
	}
	o, err := parseObject(res.Module)
	if err != nil {
		t.Fatal(err)
	}
	if r := o.section(".rela.text").relas; len(r) != 1 || r[0].sym.name != "bar" {
		t.Errorf(".rela.text keeps %d relocations, want bar's only", len(r))
	}
	if r := o.section(".rela.debug_info").relas; len(r) != 2 || r[0].sym.name != ".klp.sym.vmlinux.foo,0" {
		t.Errorf(".rela.debug_info: %d relocations, first to %s; want 2, the first to the livepatch symbol", len(r), r[0].sym.name)
	}

	// Without livepatch=Y the module cannot carry livepatch symbols.
	plain := tinyObject()
	plain.sections[3].data = []byte("license=GPL\x00")
	ko2, err := plain.write()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(ko2, Options{Exports: Exports{"bar": "vmlinux"}, Tables: map[string]*Table{Vmlinux: vmlinux}}); !errors.Is(err, ErrNotLivepatch) {
		t.Errorf("Convert(no livepatch modinfo) = %v, want ErrNotLivepatch", err)
	}
	// Relocation types the loader does not apply are refused.
	odd := tinyObject()
	odd.sections[2].relas[0].typ = uint32(elf.R_X86_64_GOTPCREL)
	ko3, _ := odd.write()
	if _, err := Convert(ko3, Options{Exports: Exports{"bar": "vmlinux"}, Tables: map[string]*Table{Vmlinux: vmlinux}}); !errors.Is(err, ErrUnsupportedReloc) {
		t.Errorf("Convert(GOTPCREL) = %v, want ErrUnsupportedReloc", err)
	}
}

// TestConvertExportedByModuleObject: a symbol exported by a module the
// patch patches becomes a livepatch symbol of that module, so the patch
// does not need the module loaded first; exported by another module, it
// stays ordinary.
func TestConvertExportedByModuleObject(t *testing.T) {
	ko := tinyModule(t)
	vmlinux := newTable(Vmlinux, "test")
	vmlinux.add("foo", Entry{Type: 't'})
	fat := newTable("fat", "fat.ko")
	fat.add("bar", Entry{Type: 'T'})
	res, err := Convert(ko, Options{
		Exports: Exports{"bar": "fat"},
		Tables:  map[string]*Table{Vmlinux: vmlinux, "fat": fat},
		Objects: []string{"fat"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Symbols {
		got = append(got, fmt.Sprintf("%s exported=%v", r.KlpName(), r.Exported))
	}
	if diff := cmp.Diff([]string{".klp.sym.vmlinux.foo,0 exported=false", ".klp.sym.fat.bar,0 exported=true"}, got); diff != "" {
		t.Errorf("resolved (-want +got):\n%s", diff)
	}
	rels, err := Relocations(res.Module)
	if err != nil {
		t.Fatal(err)
	}
	var secs []string
	for _, r := range rels {
		secs = append(secs, r.Section+" "+r.Symbol)
	}
	if diff := cmp.Diff([]string{".klp.rela.vmlinux..text .klp.sym.vmlinux.foo,0", ".klp.rela.fat..text .klp.sym.fat.bar,0"}, secs); diff != "" {
		t.Errorf("klp relocations (-want +got):\n%s", diff)
	}

	res, err = Convert(ko, Options{Exports: Exports{"bar": "fat"}, Tables: map[string]*Table{Vmlinux: vmlinux}})
	if err != nil || len(res.Symbols) != 1 || res.Symbols[0].Name != "foo" {
		t.Errorf("bar exported by a module not patched: %v, %+v; want it left ordinary", err, res)
	}
}

func TestParseObjectRefusals(t *testing.T) {
	ko := tinyModule(t)
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(ko)
		f(b)
		return b
	}
	tests := map[string][]byte{
		"empty":      nil,
		"not_elf":    []byte("\x7fELG and more bytes than a header needs......................................."),
		"32_bit":     mutate(func(b []byte) { b[elf.EI_CLASS] = byte(elf.ELFCLASS32) }),
		"big_endian": mutate(func(b []byte) { b[elf.EI_DATA] = byte(elf.ELFDATA2MSB) }),
		"executable": mutate(func(b []byte) { b[16] = byte(elf.ET_EXEC) }),
		"truncated":  ko[:len(ko)-10],
	}
	for name, data := range tests {
		if _, err := parseObject(data); !errors.Is(err, errFormat) {
			t.Errorf("%s: parseObject = %v, want errFormat", name, err)
		}
		if _, err := Convert(data, Options{}); err == nil {
			t.Errorf("%s: Convert succeeded", name)
		}
	}
}

func FuzzRelocations(f *testing.F) {
	ko := tinyModule(f)
	vmlinux := newTable(Vmlinux, "test")
	vmlinux.add("foo", Entry{Type: 't'})
	res, err := Convert(ko, Options{Exports: Exports{"bar": "vmlinux"}, Tables: map[string]*Table{Vmlinux: vmlinux}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ko)
	f.Add(res.Module)
	f.Fuzz(func(t *testing.T, data []byte) {
		Relocations(data)
		ModuleTable("m", data, "fuzz")
		Convert(data, Options{Exports: Exports{"bar": "vmlinux"}, Tables: map[string]*Table{Vmlinux: vmlinux}})
	})
}
