package klp

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// The kernel's livepatch ELF constants (include/uapi/linux/elf.h).
const (
	SHN_LIVEPATCH      = 0xff20
	SHF_RELA_LIVEPATCH = 0x00100000
)

// Sizes of ELF64 structures.
const (
	ehdrSize = 64
	shdrSize = 64
	symSize  = 24
	relaSize = 24
)

// object is a relocatable x86-64 ELF64 object (a kernel module) held as
// sections, symbols and relocations that point at each other, so that
// sections and symbols can be added, renamed and dropped and the file
// written again with every index fixed up.
type object struct {
	hdr      elf.Header64
	sections []*section // [0] is the null section
	syms     []*symbol  // [0] is the null symbol
	symtab   *section
	shstrtab *section
}

type section struct {
	name  string
	hdr   elf.Section64 // Name, Off, Link and Info are recomputed on write
	data  []byte        // nil for SHT_NOBITS
	link  *section      // when sh_link names a section
	info  *section      // when sh_info names a section
	relas []*rela       // SHT_RELA: the relocations, parsed
	group []*section    // SHT_GROUP: the members
	sig   *symbol       // SHT_GROUP: the signature symbol (sh_info)
	drop  bool
	index int // assigned on write
}

type symbol struct {
	name  string
	info  byte
	other byte
	shndx uint16   // st_shndx when it is not a section's index
	sec   *section // the section it is defined in, if any
	value uint64
	size  uint64
	index int // assigned on write
}

type rela struct {
	off    uint64
	sym    *symbol
	typ    uint32
	addend int64
}

func (s *section) flags() elf.SectionFlag { return elf.SectionFlag(s.hdr.Flags) }
func (s *section) typ() elf.SectionType   { return elf.SectionType(s.hdr.Type) }
func (s *symbol) bind() elf.SymBind       { return elf.ST_BIND(s.info) }
func (s *symbol) kind() elf.SymType       { return elf.ST_TYPE(s.info) }
func (s *symbol) undefined() bool         { return s.sec == nil && s.shndx == uint16(elf.SHN_UNDEF) }

// errFormat marks a file this package cannot read as a kernel module.
var errFormat = errors.New("not a relocatable x86-64 ELF64 kernel module")

// linkIsSection reports whether sh_link of a section of type t and flags f
// names a section.
func linkIsSection(t elf.SectionType, f elf.SectionFlag) bool {
	switch t {
	case elf.SHT_SYMTAB, elf.SHT_RELA, elf.SHT_REL, elf.SHT_GROUP, elf.SHT_DYNAMIC, elf.SHT_HASH, elf.SHT_DYNSYM:
		return true
	}
	return f&elf.SHF_LINK_ORDER != 0
}

// parseObject reads a module's ELF.
// maxAlign is the largest section alignment parseObject takes: a page, as
// much as any section of a kernel module asks; the writer pads to it.
const maxAlign = 4096

func parseObject(data []byte) (*object, error) {
	le := binary.LittleEndian
	if len(data) < ehdrSize || !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return nil, fmt.Errorf("%w: no ELF header", errFormat)
	}
	o := &object{}
	if _, err := binary.Decode(data[:ehdrSize], le, &o.hdr); err != nil {
		return nil, fmt.Errorf("%w: %v", errFormat, err)
	}
	h := &o.hdr
	switch {
	case elf.Class(h.Ident[elf.EI_CLASS]) != elf.ELFCLASS64,
		elf.Data(h.Ident[elf.EI_DATA]) != elf.ELFDATA2LSB,
		elf.Machine(h.Machine) != elf.EM_X86_64:
		return nil, fmt.Errorf("%w: class %v, %v, machine %v", errFormat,
			elf.Class(h.Ident[elf.EI_CLASS]), elf.Data(h.Ident[elf.EI_DATA]), elf.Machine(h.Machine))
	case elf.Type(h.Type) != elf.ET_REL:
		return nil, fmt.Errorf("%w: type %v", errFormat, elf.Type(h.Type))
	case h.Phnum != 0:
		return nil, fmt.Errorf("%w: %d program headers", errFormat, h.Phnum)
	case h.Shentsize != shdrSize:
		return nil, fmt.Errorf("%w: section header size %d", errFormat, h.Shentsize)
	case h.Shnum == 0 || h.Shnum >= uint16(elf.SHN_LORESERVE) || h.Shstrndx >= h.Shnum:
		return nil, fmt.Errorf("%w: %d sections, names in %d (extended numbering is not supported)", errFormat, h.Shnum, h.Shstrndx)
	}
	end := h.Shoff + uint64(h.Shnum)*shdrSize
	if h.Shoff < ehdrSize || end < h.Shoff || end > uint64(len(data)) {
		return nil, fmt.Errorf("%w: section headers at %d run past the end", errFormat, h.Shoff)
	}
	o.sections = make([]*section, h.Shnum)
	for i := range o.sections {
		s := &section{index: i}
		off := h.Shoff + uint64(i)*shdrSize
		if _, err := binary.Decode(data[off:off+shdrSize], le, &s.hdr); err != nil {
			return nil, fmt.Errorf("%w: %v", errFormat, err)
		}
		if a := s.hdr.Addralign; a > maxAlign || a&(a-1) != 0 {
			return nil, fmt.Errorf("%w: section %d aligned to %d (a power of two up to %d)", errFormat, i, a, maxAlign)
		}
		if s.typ() != elf.SHT_NOBITS && i > 0 {
			e := s.hdr.Off + s.hdr.Size
			if e < s.hdr.Off || e > uint64(len(data)) {
				return nil, fmt.Errorf("%w: section %d runs past the end", errFormat, i)
			}
			s.data = data[s.hdr.Off:e:e]
		}
		o.sections[i] = s
	}
	o.shstrtab = o.sections[h.Shstrndx]
	for i, s := range o.sections {
		name, err := cstring(o.shstrtab.data, s.hdr.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: name of section %d: %v", errFormat, i, err)
		}
		s.name = name
		if linkIsSection(s.typ(), s.flags()) && s.hdr.Link != 0 {
			if s.hdr.Link >= uint32(len(o.sections)) {
				return nil, fmt.Errorf("%w: section %s links to section %d", errFormat, s.name, s.hdr.Link)
			}
			s.link = o.sections[s.hdr.Link]
		}
		if (s.typ() == elf.SHT_RELA || s.typ() == elf.SHT_REL || s.flags()&elf.SHF_INFO_LINK != 0) && s.hdr.Info != 0 {
			if s.hdr.Info >= uint32(len(o.sections)) {
				return nil, fmt.Errorf("%w: section %s applies to section %d", errFormat, s.name, s.hdr.Info)
			}
			s.info = o.sections[s.hdr.Info]
		}
		switch s.typ() {
		case elf.SHT_SYMTAB:
			if o.symtab != nil {
				return nil, fmt.Errorf("%w: two symbol tables", errFormat)
			}
			o.symtab = s
		case elf.SHT_SYMTAB_SHNDX:
			return nil, fmt.Errorf("%w: extended section indices (%s) are not supported", errFormat, s.name)
		case elf.SHT_REL:
			return nil, fmt.Errorf("%w: SHT_REL section %s (x86-64 modules use RELA)", errFormat, s.name)
		}
	}
	if o.symtab == nil || o.symtab.link == nil {
		return nil, fmt.Errorf("%w: no symbol table", errFormat)
	}
	if err := o.parseSymbols(); err != nil {
		return nil, err
	}
	for _, s := range o.sections {
		var err error
		switch s.typ() {
		case elf.SHT_RELA:
			err = o.parseRelas(s)
		case elf.SHT_GROUP:
			err = o.parseGroup(s)
		}
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (o *object) parseSymbols() error {
	st := o.symtab
	if st.hdr.Entsize != symSize || len(st.data)%symSize != 0 || len(st.data) == 0 {
		return fmt.Errorf("%w: symbol table of %d bytes, entries of %d", errFormat, len(st.data), st.hdr.Entsize)
	}
	strtab := st.link.data
	le := binary.LittleEndian
	o.syms = make([]*symbol, len(st.data)/symSize)
	for i := range o.syms {
		b := st.data[i*symSize:]
		name, err := cstring(strtab, le.Uint32(b[0:]))
		if err != nil {
			return fmt.Errorf("%w: name of symbol %d: %v", errFormat, i, err)
		}
		s := &symbol{
			name:  name,
			info:  b[4],
			other: b[5],
			value: le.Uint64(b[8:]),
			size:  le.Uint64(b[16:]),
			index: i,
		}
		shndx := le.Uint16(b[6:])
		switch {
		case shndx == uint16(elf.SHN_XINDEX):
			return fmt.Errorf("%w: symbol %s has an extended section index", errFormat, name)
		case shndx != 0 && shndx < uint16(elf.SHN_LORESERVE):
			if int(shndx) >= len(o.sections) {
				return fmt.Errorf("%w: symbol %s is in section %d of %d", errFormat, name, shndx, len(o.sections))
			}
			s.sec = o.sections[shndx]
		default:
			s.shndx = shndx
		}
		if s.kind() == elf.STT_SECTION && s.sec != nil && s.name == "" {
			s.name = s.sec.name
		}
		o.syms[i] = s
	}
	return nil
}

func (o *object) parseRelas(s *section) error {
	if s.link != o.symtab {
		return fmt.Errorf("%w: relocations %s do not use the symbol table", errFormat, s.name)
	}
	if s.hdr.Entsize != relaSize || len(s.data)%relaSize != 0 {
		return fmt.Errorf("%w: relocations %s of %d bytes, entries of %d", errFormat, s.name, len(s.data), s.hdr.Entsize)
	}
	if s.info == nil {
		return fmt.Errorf("%w: relocations %s apply to no section", errFormat, s.name)
	}
	le := binary.LittleEndian
	s.relas = make([]*rela, len(s.data)/relaSize)
	for i := range s.relas {
		b := s.data[i*relaSize:]
		info := le.Uint64(b[8:])
		sym := elf.R_SYM64(info)
		if sym >= uint32(len(o.syms)) {
			return fmt.Errorf("%w: relocation %d of %s names symbol %d of %d", errFormat, i, s.name, sym, len(o.syms))
		}
		s.relas[i] = &rela{off: le.Uint64(b[0:]), sym: o.syms[sym], typ: elf.R_TYPE64(info), addend: int64(le.Uint64(b[16:]))}
	}
	return nil
}

func (o *object) parseGroup(s *section) error {
	if len(s.data) < 4 || len(s.data)%4 != 0 || s.hdr.Info >= uint32(len(o.syms)) {
		return fmt.Errorf("%w: group %s", errFormat, s.name)
	}
	s.sig = o.syms[s.hdr.Info]
	s.info = nil
	for off := 4; off < len(s.data); off += 4 {
		i := binary.LittleEndian.Uint32(s.data[off:])
		if i == 0 || i >= uint32(len(o.sections)) {
			return fmt.Errorf("%w: group %s holds section %d", errFormat, s.name, i)
		}
		s.group = append(s.group, o.sections[i])
	}
	return nil
}

// section returns the section called name, or nil.
func (o *object) section(name string) *section {
	for _, s := range o.sections {
		if s.name == name && !s.drop {
			return s
		}
	}
	return nil
}

func cstring(tab []byte, off uint32) (string, error) {
	if uint64(off) >= uint64(len(tab)) {
		if off == 0 {
			return "", nil
		}
		return "", fmt.Errorf("offset %d past a string table of %d bytes", off, len(tab))
	}
	n := bytes.IndexByte(tab[off:], 0)
	if n < 0 {
		return "", fmt.Errorf("string at %d has no terminating NUL", off)
	}
	return string(tab[off : int(off)+n]), nil
}

// strtabBuilder makes a string table, each string once.
type strtabBuilder struct {
	buf bytes.Buffer
	at  map[string]uint32
}

func newStrtab() *strtabBuilder {
	b := &strtabBuilder{at: map[string]uint32{"": 0}}
	b.buf.WriteByte(0)
	return b
}

func (b *strtabBuilder) add(s string) uint32 {
	if off, ok := b.at[s]; ok {
		return off
	}
	off := uint32(b.buf.Len())
	b.buf.WriteString(s)
	b.buf.WriteByte(0)
	b.at[s] = off
	return off
}

// write serialises the object: kept sections in order, their data laid out
// after the ELF header with each section's alignment, section headers last.
func (o *object) write() ([]byte, error) {
	le := binary.LittleEndian
	var kept []*section
	for _, s := range o.sections {
		if !s.drop {
			s.index = len(kept)
			kept = append(kept, s)
		}
	}
	if o.symtab.drop || o.symtab.link.drop || o.shstrtab.drop {
		return nil, errors.New("write: the symbol or string tables were dropped")
	}

	// Symbols: drop those of dropped sections, keep locals first.
	var syms []*symbol
	firstGlobal := -1
	for i, s := range o.syms {
		if i > 0 && s.sec != nil && s.sec.drop {
			if s.kind() != elf.STT_SECTION {
				return nil, fmt.Errorf("write: symbol %s is in dropped section %s", s.name, s.sec.name)
			}
			continue
		}
		s.index = len(syms)
		if s.bind() != elf.STB_LOCAL && firstGlobal < 0 {
			firstGlobal = s.index
		} else if s.bind() == elf.STB_LOCAL && firstGlobal >= 0 && i > 0 {
			return nil, fmt.Errorf("write: local symbol %s after the first global one", s.name)
		}
		syms = append(syms, s)
	}
	if firstGlobal < 0 {
		firstGlobal = len(syms)
	}

	// String tables. When one table holds both symbol and section names,
	// one builder fills it.
	strtab := newStrtab()
	shstr := strtab
	if o.shstrtab != o.symtab.link {
		shstr = newStrtab()
	}
	symNames := make([]uint32, len(syms))
	for i, s := range syms {
		if s.kind() == elf.STT_SECTION {
			continue // section symbols are named by their section
		}
		symNames[i] = strtab.add(s.name)
	}
	secNames := make([]uint32, len(kept))
	for i, s := range kept {
		secNames[i] = shstr.add(s.name)
	}

	// Section contents that depend on indices.
	var symData bytes.Buffer
	for i, s := range syms {
		var b [symSize]byte
		le.PutUint32(b[0:], symNames[i])
		b[4], b[5] = s.info, s.other
		shndx := s.shndx
		if s.sec != nil {
			shndx = uint16(s.sec.index)
		}
		le.PutUint16(b[6:], shndx)
		le.PutUint64(b[8:], s.value)
		le.PutUint64(b[16:], s.size)
		symData.Write(b[:])
	}
	o.symtab.data = symData.Bytes()
	o.symtab.hdr.Info = uint32(firstGlobal)
	o.symtab.link.data = strtab.buf.Bytes()
	o.shstrtab.data = shstr.buf.Bytes()
	for _, s := range kept {
		switch s.typ() {
		case elf.SHT_RELA:
			var b bytes.Buffer
			for _, r := range s.relas {
				var e [relaSize]byte
				le.PutUint64(e[0:], r.off)
				le.PutUint64(e[8:], elf.R_INFO(uint32(r.sym.index), r.typ))
				le.PutUint64(e[16:], uint64(r.addend))
				b.Write(e[:])
			}
			s.data = b.Bytes()
		case elf.SHT_GROUP:
			b := append([]byte(nil), s.data[:4]...)
			for _, m := range s.group {
				if m.drop {
					continue
				}
				b = le.AppendUint32(b, uint32(m.index))
			}
			s.data = b
		}
	}

	// Layout.
	var out bytes.Buffer
	out.Write(make([]byte, ehdrSize))
	for _, s := range kept[1:] {
		align := max(s.hdr.Addralign, 1)
		pad := (align - uint64(out.Len())%align) % align
		out.Write(make([]byte, pad))
		s.hdr.Off = uint64(out.Len())
		if s.typ() == elf.SHT_NOBITS {
			continue
		}
		s.hdr.Size = uint64(len(s.data))
		out.Write(s.data)
	}
	out.Write(make([]byte, (8-out.Len()%8)%8))
	shoff := uint64(out.Len())
	for i, s := range kept {
		h := s.hdr
		h.Name = secNames[i]
		if i == 0 {
			h = elf.Section64{}
		}
		if s.link != nil {
			h.Link = uint32(s.link.index)
		}
		switch {
		case s.typ() == elf.SHT_GROUP:
			h.Info = uint32(s.sig.index)
		case s.info != nil:
			h.Info = uint32(s.info.index)
		}
		if err := binary.Write(&out, le, &h); err != nil {
			return nil, err
		}
	}
	hdr := o.hdr
	hdr.Shoff = shoff
	hdr.Shnum = uint16(len(kept))
	hdr.Shstrndx = uint16(o.shstrtab.index)
	hdr.Phoff = 0
	b := out.Bytes()
	var hb bytes.Buffer
	if err := binary.Write(&hb, le, &hdr); err != nil {
		return nil, err
	}
	copy(b, hb.Bytes())
	return b, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
