package klp

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"strings"
)

// markerSection holds the KCARE_SYMPOS markers of the source (kcare/klp.h):
// NUL-terminated "[OBJECT:]NAME=POS" records. It is not loaded, and
// Convert removes it.
const markerSection = ".kcare.sympos"

// Options say what Convert resolves against.
type Options struct {
	// Exports are the kernel's exported symbols (Module.symvers).
	Exports Exports
	// Tables are the symbol tables by object: Vmlinux's and one for each
	// module in Objects. A missing vmlinux table is an error only when a
	// symbol needs it.
	Tables map[string]*Table
	// Objects are the modules the patch patches.
	Objects []string
	// Sympos are the author's choices given outside the source.
	Sympos []Sympos
}

// Resolved is one symbol Convert turned into a livepatch symbol.
type Resolved struct {
	Name     string
	Object   string
	Pos      int
	Given    string         // where the author chose the position ("" when it is unique)
	Exported bool           // exported by Object, a module that may load after the patch
	Relocs   map[string]int // relocations moved, by target section
}

// KlpName is the livepatch symbol's name: .klp.sym.OBJECT.NAME,POS.
func (r Resolved) KlpName() string { return fmt.Sprintf(".klp.sym.%s.%s,%d", r.Object, r.Name, r.Pos) }

// Result is a converted module.
type Result struct {
	Module  []byte
	Symbols []Resolved // in the module's symbol table order
}

// Convert rewrites a built livepatch module (ko) into the livepatch module
// ELF format. A module that refers to nothing non-exported comes back
// unchanged but for the markers section.
func Convert(ko []byte, opts Options) (*Result, error) {
	o, err := parseObject(ko)
	if err != nil {
		return nil, err
	}
	for _, s := range o.sections {
		if s.hdr.Flags&SHF_RELA_LIVEPATCH != 0 || strings.HasPrefix(s.name, ".klp.") {
			return nil, fmt.Errorf("%w: section %s", ErrConverted, s.name)
		}
	}
	for _, s := range o.syms {
		if s.shndx == SHN_LIVEPATCH {
			return nil, fmt.Errorf("%w: symbol %s", ErrConverted, s.name)
		}
	}
	choices, err := o.choices(opts.Sympos)
	if err != nil {
		return nil, err
	}
	targets := map[string]bool{}
	for _, m := range opts.Objects {
		if m == Vmlinux || !validObject(m) {
			return nil, fmt.Errorf("bad module object name %q", m)
		}
		if opts.Tables[m] == nil {
			return nil, fmt.Errorf("module object %s: no symbol table (its .ko, or a kallsyms dump taken while it was loaded)", m)
		}
		targets[m] = true
	}

	// Resolve every undefined symbol the kernel would not.
	res := &Result{}
	klpSyms := map[*symbol]*Resolved{}
	used := map[string]bool{}
	var errs []error
	for _, s := range o.syms[1:] {
		if !s.undefined() || s.name == "" {
			continue
		}
		r, err := resolve(s, opts, targets, choices, used)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r != nil {
			r.Relocs = map[string]int{}
			klpSyms[s] = r
		}
	}
	for _, name := range sortedKeys(choices) {
		if !used[name] {
			c := choices[name]
			errs = append(errs, &SymbolError{Symbol: name, Err: ErrBadSympos,
				Detail: fmt.Sprintf("%s (%s) names no non-exported symbol the module refers to", c, c.From)})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(klpSyms) > 0 && !isLivepatch(o) {
		return nil, fmt.Errorf("%w: the module refers to non-exported symbols, so it must carry MODULE_INFO(livepatch, \"Y\")", ErrNotLivepatch)
	}

	// Move their relocations into .klp.rela.OBJECT.SECTION sections.
	type key struct {
		obj    string
		target *section
	}
	klpSecs := map[key]*section{}
	var order []key
	for _, rs := range o.sections {
		if rs.typ() != elf.SHT_RELA || rs.drop {
			continue
		}
		t := rs.info
		if t.flags()&elf.SHF_ALLOC == 0 {
			continue // debugging information: the kernel never applies it
		}
		var keep []*rela
		for _, r := range rs.relas {
			k := klpSyms[r.sym]
			if k == nil {
				keep = append(keep, r)
				continue
			}
			if why := unsupportedTarget(k.Object, t.name, t.flags()); why != "" {
				errs = append(errs, &SectionError{Section: t.name, Symbol: r.sym.name, Err: ErrUnsupportedSection, Detail: why})
				continue
			}
			if !supportedReloc(elf.R_X86_64(r.typ)) {
				errs = append(errs, &SectionError{Section: t.name, Symbol: r.sym.name, Err: ErrUnsupportedReloc,
					Detail: fmt.Sprintf("%v at offset %#x", elf.R_X86_64(r.typ), r.off)})
				continue
			}
			kk := key{k.Object, t}
			ks := klpSecs[kk]
			if ks == nil {
				ks = &section{
					name: ".klp.rela." + k.Object + "." + t.name,
					hdr: elf.Section64{
						Type:      uint32(elf.SHT_RELA),
						Flags:     uint64(elf.SHF_ALLOC|elf.SHF_INFO_LINK) | SHF_RELA_LIVEPATCH,
						Addralign: 8,
						Entsize:   relaSize,
					},
					link: o.symtab,
					info: t,
				}
				klpSecs[kk] = ks
				order = append(order, kk)
			}
			ks.relas = append(ks.relas, r)
			k.Relocs[t.name]++
		}
		rs.relas = keep
		if len(keep) == 0 {
			rs.drop = true
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, k := range order {
		o.sections = append(o.sections, klpSecs[k])
	}
	for _, s := range o.syms[1:] {
		r := klpSyms[s]
		if r == nil {
			continue
		}
		s.name = r.KlpName()
		s.shndx = SHN_LIVEPATCH
		res.Symbols = append(res.Symbols, *r)
	}
	if m := o.section(markerSection); m != nil {
		m.drop = true
	}
	res.Module, err = o.write()
	if err != nil {
		return nil, err
	}
	return res, nil
}

// choices merges the markers of the source with the author's other
// choices, by symbol name.
func (o *object) choices(given []Sympos) (map[string]Sympos, error) {
	all := append([]Sympos(nil), given...)
	if m := o.section(markerSection); m != nil {
		for _, rec := range bytes.Split(bytes.TrimRight(m.data, "\x00"), []byte{0}) {
			if len(rec) == 0 {
				continue
			}
			c, err := ParseSympos(string(rec), "KCARE_SYMPOS in the source")
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadSympos, err)
			}
			all = append(all, c)
		}
	}
	choices := map[string]Sympos{}
	for _, c := range all {
		if prev, ok := choices[c.Name]; ok && (prev.Object != c.Object || prev.Pos != c.Pos) {
			return nil, &SymbolError{Symbol: c.Name, Err: ErrBadSympos,
				Detail: fmt.Sprintf("given as %s (%s) and %s (%s)", prev, prev.From, c, c.From)}
		}
		choices[c.Name] = c
	}
	return choices, nil
}

// resolve decides what becomes of an undefined symbol: nil when the kernel
// resolves it itself (exported), else its livepatch object and position.
func resolve(s *symbol, opts Options, targets map[string]bool, choices map[string]Sympos, used map[string]bool) (*Resolved, error) {
	name := s.name
	choice, explicit := choices[name]
	if exp, ok := opts.Exports[name]; ok && !targets[exp] {
		if explicit {
			used[name] = true
			return nil, &SymbolError{Symbol: name, Err: ErrBadSympos,
				Detail: fmt.Sprintf("%s (%s): %s exports it, so the module loader resolves it and no position is needed", choice, choice.From, exp)}
		}
		return nil, nil
	}
	if explicit {
		used[name] = true
	}
	exported := false
	var objects []string
	if exp, ok := opts.Exports[name]; ok {
		// Exported by a module the patch patches: that module may load
		// after the patch, so livepatch resolves it when it does.
		objects, exported = []string{exp}, true
	} else {
		objects = append([]string{Vmlinux}, sortedKeys(targets)...)
	}
	if explicit && choice.Object != "" {
		if choice.Object != Vmlinux && !targets[choice.Object] {
			return nil, &SymbolError{Symbol: name, Err: ErrBadSympos,
				Detail: fmt.Sprintf("%s (%s): %s is not an object the patch patches", choice, choice.From, choice.Object)}
		}
		objects = []string{choice.Object}
	}
	var found []string
	var searched []string
	for _, obj := range objects {
		t := opts.Tables[obj]
		if t == nil {
			continue
		}
		searched = append(searched, t.Source)
		if len(t.Lookup(name)) > 0 {
			found = append(found, obj)
		}
	}
	switch {
	case len(found) == 0 && s.bind() == elf.STB_WEAK:
		return nil, nil // the module loader leaves an unresolved weak symbol 0
	case len(found) == 0 && len(searched) == 0:
		return nil, &SymbolError{Symbol: name, Err: ErrUnresolved,
			Detail: "not exported, and no symbol table of the target kernel given (--kallsyms or --system-map)"}
	case len(found) == 0:
		detail := fmt.Sprintf("not exported, and not in %s", strings.Join(searched, ", "))
		var others []string
		for _, obj := range sortedKeys(opts.Tables) {
			if !targets[obj] && obj != Vmlinux && len(opts.Tables[obj].Lookup(name)) > 0 {
				others = append(others, obj)
			}
		}
		if len(others) > 0 {
			detail += fmt.Sprintf("; module %s has it: is it an object the patch patches (--object)?", strings.Join(others, ", "))
		}
		return nil, &SymbolError{Symbol: name, Err: ErrUnresolved, Detail: detail}
	case len(found) > 1:
		return nil, &SymbolError{Symbol: name, Err: ErrAmbiguous,
			Detail: fmt.Sprintf("in %s; say which with KCARE_SYMPOS_OBJ(OBJECT, %s, POS) or --sympos OBJECT:%s=POS", strings.Join(found, " and "), name, name)}
	}
	obj := found[0]
	entries := opts.Tables[obj].Lookup(name)
	pos, err := position(name, obj, entries, choice, explicit)
	if err != nil {
		return nil, err
	}
	r := &Resolved{Name: name, Object: obj, Pos: pos, Exported: exported}
	if explicit {
		r.Given = choice.From
	}
	return r, nil
}

// position returns the livepatch position of name among entries: 0 when it
// is unique, else the author's choice, checked against the table.
func position(name, obj string, entries []Entry, choice Sympos, explicit bool) (int, error) {
	n := len(entries)
	if !explicit {
		if n > 1 {
			return 0, &SymbolError{Symbol: name, Err: ErrAmbiguous,
				Detail: fmt.Sprintf("%d symbols of that name in %s (%s); say which with KCARE_SYMPOS(%s, POS) or --sympos %s=POS",
					n, obj, describe(entries), name, name)}
		}
		if entries[0].Late {
			return 0, &SymbolError{Symbol: name, Err: ErrUnresolved,
				Detail: fmt.Sprintf("in %s only in a section the kernel frees after loading it (init)", obj)}
		}
		return 0, nil
	}
	p := choice.Pos
	if p == 0 && n == 1 {
		return 0, nil
	}
	if p < 1 || p > n {
		return 0, &SymbolError{Symbol: name, Err: ErrBadSympos,
			Detail: fmt.Sprintf("%s (%s): %s has %d symbols of that name", choice, choice.From, obj, n)}
	}
	// A module's kallsyms lists its init symbols only while it loads: the
	// position must be the same in both lists.
	core := 0
	for _, e := range entries[:p] {
		if !e.Late {
			core++
		}
	}
	if entries[p-1].Late || core != p {
		return 0, &SymbolError{Symbol: name, Err: ErrAmbiguous,
			Detail: fmt.Sprintf("%s (%s): in %s the position changes once the module's init sections are freed", choice, choice.From, obj)}
	}
	return p, nil
}

func describe(entries []Entry) string {
	var parts []string
	for i, e := range entries {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("and %d more", len(entries)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%d: %c %016x", i+1, e.Type, e.Addr))
	}
	return strings.Join(parts, ", ")
}

// specialSections are tables that describe the patch module's own code to
// the kernel: it reads them when the module loads, so each entry must
// point into the module, never at a symbol livepatch resolves.
var specialSections = map[string]string{
	".altinstructions":             "alternatives",
	".parainstructions":            "paravirt patch sites",
	".smp_locks":                   "SMP lock prefixes",
	".retpoline_sites":             "retpoline call sites",
	".return_sites":                "return thunk sites",
	".call_sites":                  "call depth tracking sites",
	".ibt_endbr_seal":              "IBT seal sites",
	".orc_unwind":                  "ORC unwind data",
	".orc_unwind_ip":               "ORC unwind data",
	"__bug_table":                  "BUG() and WARN() sites",
	"__ex_table":                   "exception fixups",
	"__mcount_loc":                 "ftrace call sites",
	"__patchable_function_entries": "ftrace call sites",
	".static_call_sites":           "static_call() sites; call the function directly instead of through a non-exported static call",
	".static_call_tramp_key":       "static call trampolines",
	".gnu.linkonce.this_module":    "the module structure",
	"__param":                      "module parameters",
	"__versions":                   "symbol versions",
	".modinfo":                     "module information",
	".init_array":                  "constructors",
	".ctors":                       "constructors",
}

// unsupportedTarget says why relocations for a symbol of object obj may not
// be applied to the section called name, or "" when they may.
func unsupportedTarget(obj, name string, flags elf.SectionFlag) string {
	if what, ok := specialSections[name]; ok {
		return fmt.Sprintf("the kernel reads this table (%s) when the patch module loads; it may point only into the patch module", what)
	}
	if strings.HasPrefix(name, "__ksymtab") || strings.HasPrefix(name, "__kcrctab") {
		return "the patch module's exports may not refer to another object's symbols"
	}
	late := obj != Vmlinux
	switch {
	case name == "__jump_table" && late:
		return fmt.Sprintf("static keys of %s: jump labels are set up when the patch module loads, before %s's symbols can be resolved", obj, obj)
	case name == "__jump_table":
		return ""
	case name == ".altinstr_replacement" && late:
		return fmt.Sprintf("alternatives are applied when the patch module loads, before %s's symbols can be resolved", obj)
	case name == ".altinstr_replacement":
		return ""
	case strings.HasPrefix(name, ".init") && late:
		return fmt.Sprintf("init sections are freed before %s may load and its symbols be resolved", obj)
	case flags&elf.SHF_EXECINSTR != 0:
		return ""
	case name == ".data" || name == ".rodata" || strings.HasPrefix(name, ".data.") || strings.HasPrefix(name, ".rodata.") ||
		name == ".init.data" || name == ".init.rodata" || name == ".exit.data":
		return ""
	}
	return "kcare-build does not know when the kernel reads this section, so it does not move relocations into it"
}

// supportedReloc reports whether the x86-64 module loader
// (arch/x86/kernel/module.c) applies relocations of type t.
func supportedReloc(t elf.R_X86_64) bool {
	switch t {
	case elf.R_X86_64_64, elf.R_X86_64_32, elf.R_X86_64_32S, elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_PC64:
		return true
	}
	return false
}

// isLivepatch reports whether the module's .modinfo says livepatch=Y.
func isLivepatch(o *object) bool {
	m := o.section(".modinfo")
	if m == nil {
		return false
	}
	for _, kv := range bytes.Split(m.data, []byte{0}) {
		if string(kv) == "livepatch=Y" {
			return true
		}
	}
	return false
}

// Reloc is one relocation of a livepatch relocation section.
type Reloc struct {
	Section string // the .klp.rela section
	Target  string // the section it applies to
	Offset  uint64
	Type    elf.R_X86_64
	Symbol  string // the .klp.sym name
	Addend  int64
}

// Relocations lists a module's livepatch relocations, in section order.
func Relocations(ko []byte) ([]Reloc, error) {
	o, err := parseObject(ko)
	if err != nil {
		return nil, err
	}
	var out []Reloc
	for _, s := range o.sections {
		if s.hdr.Flags&SHF_RELA_LIVEPATCH == 0 {
			continue
		}
		for _, r := range s.relas {
			out = append(out, Reloc{Section: s.name, Target: s.info.name, Offset: r.off,
				Type: elf.R_X86_64(r.typ), Symbol: r.sym.name, Addend: r.addend})
		}
	}
	return out, nil
}
