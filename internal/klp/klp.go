// Package klp rewrites a livepatch module built against a distribution
// kernel's headers into the kernel's livepatch module ELF format
// (Documentation/livepatch/module-elf-format.rst), so that the patch can
// call and read what the target kernel does not export.
//
// Every undefined symbol of the module that the kernel does not export
// becomes a livepatch symbol `.klp.sym.OBJECT.NAME,POS` whose section index
// is SHN_LIVEPATCH, and every relocation that refers to it moves out of
// its ordinary .rela section into `.klp.rela.OBJECT.SECTION`, a relocation
// section flagged SHF_RELA_LIVEPATCH and SHF_ALLOC. The kernel resolves
// those symbols when the patch is loaded (vmlinux) or when the patched
// module is (a module object), by name and position in kallsyms: POS 0
// means the name is unique in the object, POS N the N-th symbol of that
// name in kallsyms order. Exported symbols stay ordinary.
//
// Positions come from the target kernel's symbol table: a /proc/kallsyms
// dump of a host running the same build (ParseKallsyms), the System.map of
// its -dbg package (ParseSystemMap), or, for a module object, the module's
// own .ko (ModuleTable). Where a name is not unique the patch author says
// which one is meant (Sympos); Convert never guesses.
package klp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors Convert returns, each wrapped in a *SymbolError or *SectionError
// naming what it is about.
var (
	// ErrUnresolved: the symbol is neither exported nor in the target
	// kernel's symbol table.
	ErrUnresolved = errors.New("unresolved symbol")
	// ErrAmbiguous: the name is not unique and the author did not say
	// which one is meant.
	ErrAmbiguous = errors.New("ambiguous symbol")
	// ErrBadSympos: a position the author gave does not fit the table,
	// contradicts another, or names a symbol the module does not use.
	ErrBadSympos = errors.New("bad symbol position")
	// ErrUnsupportedSection: a reference to a non-exported symbol from a
	// section whose relocations livepatch cannot apply in time.
	ErrUnsupportedSection = errors.New("unsupported section")
	// ErrUnsupportedReloc: a relocation type the kernel's module loader
	// does not apply.
	ErrUnsupportedReloc = errors.New("unsupported relocation type")
	// ErrConverted: the module already carries livepatch symbols or
	// relocation sections.
	ErrConverted = errors.New("module already has livepatch relocations")
	// ErrNotLivepatch: the module needs klp relocations but is no
	// livepatch module (no livepatch=Y in .modinfo).
	ErrNotLivepatch = errors.New("not a livepatch module")
)

// SymbolError is an error about one symbol.
type SymbolError struct {
	Symbol string
	Err    error  // one of the Err* values
	Detail string // what was found, and what the author can do
}

func (e *SymbolError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%s: %v", e.Symbol, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Symbol, e.Err, e.Detail)
}

func (e *SymbolError) Unwrap() error { return e.Err }

// SectionError is an error about the relocations of one section.
type SectionError struct {
	Section string // the section the relocations apply to
	Symbol  string // the non-exported symbol they refer to
	Err     error
	Detail  string
}

func (e *SectionError) Error() string {
	return fmt.Sprintf("%s: %v %s: %s", e.Symbol, e.Err, e.Section, e.Detail)
}

func (e *SectionError) Unwrap() error { return e.Err }

// Sympos is an author's choice among same-named symbols: the Pos-th symbol
// called Name (counting from 1 in kallsyms order) in Object ("" for
// whichever of vmlinux and the patched modules holds the name).
type Sympos struct {
	Object string
	Name   string
	Pos    int
	From   string // where it was given: "--sympos", "source"
}

func (s Sympos) String() string {
	if s.Object != "" {
		return fmt.Sprintf("%s:%s=%d", s.Object, s.Name, s.Pos)
	}
	return fmt.Sprintf("%s=%d", s.Name, s.Pos)
}

// ParseSympos parses "[OBJECT:]NAME=POS".
func ParseSympos(s, from string) (Sympos, error) {
	lhs, pos, ok := strings.Cut(s, "=")
	if !ok {
		return Sympos{}, fmt.Errorf("sympos %q: want [OBJECT:]NAME=POS", s)
	}
	obj, name, ok := strings.Cut(lhs, ":")
	if !ok {
		obj, name = "", lhs
	}
	p, err := strconv.Atoi(pos)
	switch {
	case err != nil || p < 0:
		return Sympos{}, fmt.Errorf("sympos %q: position %q is not a number from 0 up", s, pos)
	case !validSymbol(name):
		return Sympos{}, fmt.Errorf("sympos %q: bad symbol name %q", s, name)
	case ok && !validObject(obj):
		return Sympos{}, fmt.Errorf("sympos %q: bad object name %q", s, obj)
	}
	return Sympos{Object: obj, Name: name, Pos: p, From: from}, nil
}

func validSymbol(s string) bool {
	if s == "" || len(s) > 511 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '.' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validObject reports whether s can name a klp object: vmlinux or a module
// name, which the kernel reads up to the first dot and for 55 bytes.
func validObject(s string) bool {
	if s == "" || len(s) > 55 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
