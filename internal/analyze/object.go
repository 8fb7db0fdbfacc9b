package analyze

import (
	"bytes"
	"debug/elf"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Object is the code of a relocatable ELF object (a kernel .o built with
// -ffunction-sections), function by function, normalised for comparison.
type Object struct {
	Funcs map[string]*Func // by symbol name
}

// Func is one function symbol of an Object.
type Func struct {
	Symbol string // the symbol, e.g. "vfs_tmpfile" or "foo.isra.0"
	Base   string // the function it belongs to: "foo" for "foo.isra.0"
	Key    string // the symbol without clone numbers: "foo.isra" for "foo.isra.0"
	Global bool   // a global (not static) symbol
	Code   []byte // machine code, the bytes under each relocation zeroed
	Relocs []Reloc
}

// Reloc is one relocation in a function's code, its target normalised: a
// section symbol plus addend becomes the function, variable or string it
// points into, and clone and uniquifying numbers are dropped, so the same
// reference compares equal in two builds.
type Reloc struct {
	Offset uint64 // from the start of the function
	Type   elf.R_X86_64
	Target string
	Addend int64 // from the start of the normalised target
}

func (r Reloc) String() string {
	return fmt.Sprintf("+%#x %v %s%+d", r.Offset, r.Type, r.Target, r.Addend)
}

// cloneSuffix matches what GCC appends to a function it clones, splits
// or outlines, and what it appends to local statics to keep them apart
// (".isra.0", ".constprop.3", ".part.1", ".cold", ".cold.2", ".12").
var cloneSuffix = regexp.MustCompile(`\.(isra|constprop|part|cold|lto_priv|localalias)(\.[0-9]+)?|\.[0-9]+`)

// cloneKey drops clone and uniquifying numbers but keeps the kind of
// clone: "foo.isra.0" -> "foo.isra", "foo.constprop.0.isra.0" ->
// "foo.constprop.isra", "__key.12" -> "__key".
func cloneKey(name string) string {
	return cloneSuffix.ReplaceAllStringFunc(name, func(s string) string {
		if i := strings.IndexByte(s[1:], '.'); i >= 0 {
			return s[:i+1]
		}
		if s[1] >= '0' && s[1] <= '9' {
			return ""
		}
		return s
	})
}

// baseName is the function a symbol belongs to: "foo.isra.0" -> "foo".
func baseName(name string) string {
	if i := cloneSuffix.FindStringIndex(name); i != nil {
		return name[:i[0]]
	}
	return name
}

// IsClone reports whether the symbol is a compiler-made variant of its
// function rather than the function itself.
func (f *Func) IsClone() bool { return f.Symbol != f.Base }

// ReadObject reads the functions of a relocatable x86-64 ELF object.
func ReadObject(data []byte) (*Object, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("read object: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_REL || f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("read object: not a relocatable x86-64 ELF object (%v, %v)", f.Type, f.Machine)
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("read object: %w", err)
	}
	o := &Object{Funcs: map[string]*Func{}}
	r := &objReader{f: f, syms: syms, data: map[int][]byte{}}
	r.index()
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || int(s.Section) >= len(f.Sections) {
			continue
		}
		sec := int(s.Section)
		code, err := r.sectionData(sec)
		if err != nil {
			return nil, err
		}
		if f.Sections[sec].Type == elf.SHT_NOBITS || s.Value+s.Size > uint64(len(code)) {
			return nil, fmt.Errorf("read object: function %s lies outside its section %s", s.Name, f.Sections[sec].Name)
		}
		fn := &Func{
			Symbol: s.Name,
			Base:   baseName(s.Name),
			Key:    cloneKey(s.Name),
			Global: elf.ST_BIND(s.Info) != elf.STB_LOCAL,
			Code:   append([]byte(nil), code[s.Value:s.Value+s.Size]...),
		}
		relocs, err := r.relocs(sec)
		if err != nil {
			return nil, err
		}
		for _, rel := range relocs {
			if rel.off < s.Value || rel.off >= s.Value+s.Size {
				continue
			}
			off := rel.off - s.Value
			for j := uint64(0); j < relocSize(rel.typ) && off+j < uint64(len(fn.Code)); j++ {
				fn.Code[off+j] = 0
			}
			target, addend := r.target(rel)
			fn.Relocs = append(fn.Relocs, Reloc{Offset: off, Type: rel.typ, Target: target, Addend: addend})
		}
		if _, dup := o.Funcs[s.Name]; dup {
			return nil, fmt.Errorf("read object: two functions named %s", s.Name)
		}
		o.Funcs[s.Name] = fn
	}
	return o, nil
}

// relocSize is how many bytes of code a relocation of type t fills in.
func relocSize(t elf.R_X86_64) uint64 {
	switch t {
	case elf.R_X86_64_64, elf.R_X86_64_PC64, elf.R_X86_64_GOTOFF64, elf.R_X86_64_GOTPC64, elf.R_X86_64_GOT64:
		return 8
	case elf.R_X86_64_16, elf.R_X86_64_PC16:
		return 2
	case elf.R_X86_64_8, elf.R_X86_64_PC8:
		return 1
	case elf.R_X86_64_NONE:
		return 0
	}
	return 4
}

// pcRelative reports whether a relocation of type t is relative to the
// place it patches: its addend then carries -4 (the rest of the
// instruction) besides the offset into the target.
func pcRelative(t elf.R_X86_64) bool {
	switch t {
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_GOTPCREL, elf.R_X86_64_GOTPCRELX,
		elf.R_X86_64_REX_GOTPCRELX, elf.R_X86_64_GOTPC32:
		return true
	}
	return false
}

type rawReloc struct {
	off    uint64
	typ    elf.R_X86_64
	sym    int // index into objReader.syms, -1 for none
	addend int64
}

type objReader struct {
	f      *elf.File
	syms   []elf.Symbol
	data   map[int][]byte
	rela   map[int]int   // section index -> index of its SHT_RELA section
	bySec  map[int][]int // section index -> symbols defined in it, by value
	cached map[int][]rawReloc
}

func (r *objReader) index() {
	r.rela = map[int]int{}
	r.bySec = map[int][]int{}
	r.cached = map[int][]rawReloc{}
	for i, s := range r.f.Sections {
		if s.Type == elf.SHT_RELA {
			r.rela[int(s.Info)] = i
		}
	}
	for i, s := range r.syms {
		t := elf.ST_TYPE(s.Info)
		if s.Section == elf.SHN_UNDEF || int(s.Section) >= len(r.f.Sections) || t == elf.STT_SECTION || t == elf.STT_FILE || s.Name == "" {
			continue
		}
		r.bySec[int(s.Section)] = append(r.bySec[int(s.Section)], i)
	}
	for sec, list := range r.bySec {
		sort.SliceStable(list, func(a, b int) bool { return r.syms[list[a]].Value < r.syms[list[b]].Value })
		r.bySec[sec] = list
	}
}

func (r *objReader) sectionData(i int) ([]byte, error) {
	if d, ok := r.data[i]; ok {
		return d, nil
	}
	s := r.f.Sections[i]
	if s.Type == elf.SHT_NOBITS {
		r.data[i] = nil
		return nil, nil
	}
	d, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read object: section %s: %w", s.Name, err)
	}
	r.data[i] = d
	return d, nil
}

// relocs returns the relocations that apply to section sec.
func (r *objReader) relocs(sec int) ([]rawReloc, error) {
	if rs, ok := r.cached[sec]; ok {
		return rs, nil
	}
	ri, ok := r.rela[sec]
	if !ok {
		r.cached[sec] = nil
		return nil, nil
	}
	d, err := r.sectionData(ri)
	if err != nil {
		return nil, err
	}
	if len(d)%24 != 0 {
		return nil, fmt.Errorf("read object: %s is not a whole number of Elf64_Rela", r.f.Sections[ri].Name)
	}
	bo := r.f.ByteOrder
	rs := make([]rawReloc, 0, len(d)/24)
	for i := 0; i < len(d); i += 24 {
		info := bo.Uint64(d[i+8:])
		symIdx := int(info>>32) - 1 // debug/elf's Symbols drops the null symbol
		if symIdx >= len(r.syms) {
			return nil, fmt.Errorf("read object: %s names symbol %d of %d", r.f.Sections[ri].Name, symIdx+1, len(r.syms))
		}
		rs = append(rs, rawReloc{
			off:    bo.Uint64(d[i:]),
			typ:    elf.R_X86_64(uint32(info)),
			sym:    symIdx,
			addend: int64(bo.Uint64(d[i+16:])),
		})
	}
	r.cached[sec] = rs
	return rs, nil
}

// target names what a relocation points at, in terms that survive a
// rebuild: a symbol (without clone numbers) and an addend from its start,
// or the contents of a merged string.
func (r *objReader) target(rel rawReloc) (string, int64) {
	if rel.sym < 0 {
		return "", rel.addend
	}
	s := r.syms[rel.sym]
	if elf.ST_TYPE(s.Info) != elf.STT_SECTION {
		return cloneKey(s.Name), rel.addend
	}
	sec := int(s.Section)
	if sec <= 0 || sec >= len(r.f.Sections) {
		return "?section", rel.addend
	}
	hdr := r.f.Sections[sec]
	// Where in the section the reference points. A PC-relative addend
	// also holds minus the distance from the field to the end of the
	// instruction: 4, or more when an immediate follows the field
	// ("addl $1, counter(%rip)" has 5). Prefer the distance that lands on
	// the start of a symbol.
	places := []int64{rel.addend}
	if pcRelative(rel.typ) {
		places = []int64{rel.addend + 4, rel.addend + 5, rel.addend + 6, rel.addend + 8}
	}
	if hdr.Flags&elf.SHF_MERGE != 0 && hdr.Flags&elf.SHF_STRINGS != 0 {
		at := places[0]
		d, err := r.sectionData(sec)
		if err == nil && at >= 0 && at < int64(len(d)) {
			str := d[at:]
			if i := bytes.IndexByte(str, 0); i >= 0 {
				str = str[:i]
			}
			return fmt.Sprintf("string %q", str), rel.addend - at
		}
	}
	syms := r.bySec[sec]
	for _, at := range places {
		for _, i := range syms {
			if c := r.syms[i]; int64(c.Value) == at {
				return cloneKey(c.Name), rel.addend - at
			}
		}
	}
	// Else the symbol that covers the place.
	at := places[0]
	for j := len(syms) - 1; j >= 0; j-- {
		c := r.syms[syms[j]]
		if int64(c.Value) <= at && at < int64(c.Value+c.Size) {
			return cloneKey(c.Name), rel.addend - int64(c.Value)
		}
	}
	return "section " + cloneKey(hdr.Name), rel.addend
}
