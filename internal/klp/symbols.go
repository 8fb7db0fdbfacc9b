package klp

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Vmlinux is the object name of the kernel image itself.
const Vmlinux = "vmlinux"

// Table is the symbol table of one object (vmlinux or a module) in the
// order the kernel's kallsyms walks it, which is the order livepatch counts
// a symbol's position in.
type Table struct {
	Object string // "vmlinux" or a module name
	Source string // where it was read from, for messages
	byName map[string][]Entry
	names  []string // every symbol's name, in order
	late   []bool
}

// Entry is one symbol of a Table.
type Entry struct {
	Addr uint64
	Type byte // the kallsyms type letter: t, T, d, D, b, r, ...
	// Late is set for a module symbol the kernel counts only while the
	// module is being loaded (one in an init section): kallsyms drops it
	// once the module's init has run.
	Late bool
}

func newTable(object, source string) *Table {
	return &Table{Object: object, Source: source, byName: make(map[string][]Entry)}
}

func (t *Table) add(name string, e Entry) {
	t.byName[name] = append(t.byName[name], e)
	t.names = append(t.names, name)
	t.late = append(t.late, e.Late)
}

// Lookup returns the entries called name, in order.
func (t *Table) Lookup(name string) []Entry { return t.byName[name] }

// Len returns the number of symbols in the table.
func (t *Table) Len() int { return len(t.names) }

// Names returns the names of the symbols kallsyms lists once the object is
// loaded (all but the Late ones), in order.
func (t *Table) Names() []string {
	var out []string
	for i, n := range t.names {
		if !t.late[i] {
			out = append(out, n)
		}
	}
	return out
}

// Duplicates returns how many names the table holds more than once.
func (t *Table) Duplicates() int {
	n := 0
	for _, es := range t.byName {
		if len(es) > 1 {
			n++
		}
	}
	return n
}

// parseSymLine parses "ADDR TYPE NAME" with an optional "\t[MODULE]".
func parseSymLine(line string) (addr uint64, typ byte, name, module string, err error) {
	f := strings.Fields(line)
	if len(f) != 3 && len(f) != 4 {
		return 0, 0, "", "", fmt.Errorf("want ADDRESS TYPE NAME [[MODULE]], got %d fields", len(f))
	}
	addr, err = strconv.ParseUint(f[0], 16, 64)
	if err != nil {
		return 0, 0, "", "", fmt.Errorf("address %q: not hex", f[0])
	}
	if len(f[1]) != 1 {
		return 0, 0, "", "", fmt.Errorf("type %q: not one letter", f[1])
	}
	if len(f) == 4 {
		m, open := strings.CutPrefix(f[3], "[")
		m, closed := strings.CutSuffix(m, "]")
		if !open || !closed || m == "" {
			return 0, 0, "", "", fmt.Errorf("module %q: not [NAME]", f[3])
		}
		module = m
	}
	return addr, f[1][0], f[2], module, nil
}

// ParseKallsyms parses a /proc/kallsyms dump: vmlinux's symbols, and each
// loaded module's, tagged [module], in the kernel's order. Names of
// modules map to their tables; vmlinux is under Vmlinux.
func ParseKallsyms(data []byte, source string) (map[string]*Table, error) {
	tables := map[string]*Table{Vmlinux: newTable(Vmlinux, source)}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		addr, typ, name, module, err := parseSymLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", source, n, err)
		}
		obj := Vmlinux
		if module != "" {
			obj = module
		}
		t := tables[obj]
		if t == nil {
			t = newTable(obj, source)
			tables[obj] = t
		}
		t.add(name, Entry{Addr: addr, Type: typ})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if tables[Vmlinux].Len() == 0 {
		return nil, fmt.Errorf("%s: no vmlinux symbols", source)
	}
	return tables, nil
}

// ParseSystemMap parses a System.map (`nm -n` of vmlinux, as
// linux-image-RELEASE-dbg ships it) into vmlinux's table. It leaves out
// what scripts/kallsyms leaves out of kallsyms, so that positions count the
// same: undefined, debugging and absolute symbols.
func ParseSystemMap(data []byte, source string) (*Table, error) {
	// Debian's linux-image packages ship a one-line placeholder.
	if bytes.Contains(data, []byte("The real System.map is in")) {
		return nil, fmt.Errorf("%s: Debian's placeholder, not a real System.map (that is in linux-image-RELEASE-dbg)", source)
	}
	t := newTable(Vmlinux, source)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		addr, typ, name, module, err := parseSymLine(line)
		if err == nil && module != "" {
			err = fmt.Errorf("module tag [%s] in a System.map", module)
		}
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", source, n, err)
		}
		switch typ {
		case 'U', 'u', 'N', 'n', 'A', 'a', 'w', 'W', 'v', 'V':
			continue
		}
		t.add(name, Entry{Addr: addr, Type: typ})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if t.Len() < 1000 {
		return nil, fmt.Errorf("%s: %d symbols; not a real System.map", source, t.Len())
	}
	return t, nil
}

// ModuleTable reads a module's own symbol table from its .ko, in the order
// the kernel's kallsyms walks it. Symbols the kernel keeps only while the
// module is being loaded (in .init sections, or not loaded at all) are
// marked Late.
func ModuleTable(name string, ko []byte, source string) (*Table, error) {
	o, err := parseObject(ko)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	t := newTable(name, source)
	var pcpu *section
	for _, s := range o.sections {
		if s.name == ".data..percpu" {
			pcpu = s
		}
	}
	for _, s := range o.syms[1:] {
		if s.undefined() || s.name == "" || s.kind() == elf.STT_SECTION {
			continue
		}
		// kernel/module/kallsyms.c: is_core_symbol. The loader takes
		// SHF_ALLOC off .modinfo and __versions.
		core := s.sec != nil && (s.sec == pcpu ||
			s.sec.flags()&elf.SHF_ALLOC != 0 && !strings.HasPrefix(s.sec.name, ".init") &&
				s.sec.name != ".modinfo" && s.sec.name != "__versions")
		t.add(s.name, Entry{Addr: s.value, Type: kallsymsType(s), Late: !core})
	}
	return t, nil
}

// kallsymsType approximates the letter kallsyms shows for a module symbol.
func kallsymsType(s *symbol) byte {
	c := byte('?')
	switch {
	case s.sec == nil:
		c = 'a'
	case s.sec.flags()&elf.SHF_EXECINSTR != 0:
		c = 't'
	case s.sec.typ() == elf.SHT_NOBITS:
		c = 'b'
	case s.sec.flags()&elf.SHF_WRITE != 0:
		c = 'd'
	case s.sec.flags()&elf.SHF_ALLOC != 0:
		c = 'r'
	}
	if s.bind() != elf.STB_LOCAL && c != '?' {
		c -= 'a' - 'A'
	}
	return c
}

// Exports maps each exported symbol to the object exporting it: "vmlinux"
// or a module name.
type Exports map[string]string

// ParseSymvers parses a Module.symvers: CRC, symbol, module path, export
// type and namespace, tab-separated.
func ParseSymvers(data []byte, source string) (Exports, error) {
	ex := make(Exports)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 4 || !strings.HasPrefix(f[0], "0x") || f[1] == "" || f[2] == "" || !strings.HasPrefix(f[3], "EXPORT_SYMBOL") {
			return nil, fmt.Errorf("%s line %d: want CRC, SYMBOL, MODULE, EXPORT_SYMBOL[_GPL], NAMESPACE", source, n)
		}
		ex[f[1]] = ModuleName(f[2])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(ex) == 0 {
		return nil, fmt.Errorf("%s: no exported symbols", source)
	}
	return ex, nil
}

// ModuleName returns the name the kernel knows a module by, from its path
// in Module.symvers or its file name: "fs/fat/vfat" and "nls-utf8.ko" are
// "vfat" and "nls_utf8".
func ModuleName(p string) string {
	n := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		n = strings.TrimSuffix(n, ext)
	}
	n = strings.TrimSuffix(n, ".ko")
	return strings.ReplaceAll(n, "-", "_")
}
