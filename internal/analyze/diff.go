package analyze

import (
	"bytes"
	"sort"
)

// Kind is how a function symbol differs between the build before a patch
// and the build after it.
type Kind string

const (
	Changed Kind = "changed" // in both builds, with other code or relocations
	Added   Kind = "new"     // only after the patch
	Removed Kind = "removed" // only before the patch (now inlined, or deleted)
)

// SymbolChange is one function symbol that differs.
type SymbolChange struct {
	Kind   Kind
	Before *Func // nil when Added
	After  *Func // nil when Removed
}

// Symbol is the symbol's name: the running kernel's (Before) when it has one.
func (c SymbolChange) Symbol() string {
	if c.Before != nil {
		return c.Before.Symbol
	}
	return c.After.Symbol
}

// Base is the function the symbol belongs to.
func (c SymbolChange) Base() string {
	if c.Before != nil {
		return c.Before.Base
	}
	return c.After.Base
}

// DiffObjects compares two builds of one object function by function and
// returns the symbols whose code or relocations differ, sorted by symbol.
// Clones are matched by kind ("foo.isra.0" with "foo.isra.1"); when a
// function has several clones of one kind they are paired in name order.
func DiffObjects(before, after *Object) []SymbolChange {
	group := func(o *Object) map[string][]*Func {
		m := map[string][]*Func{}
		for _, f := range o.Funcs {
			m[f.Key] = append(m[f.Key], f)
		}
		for _, fs := range m {
			sort.Slice(fs, func(i, j int) bool { return fs[i].Symbol < fs[j].Symbol })
		}
		return m
	}
	b, a := group(before), group(after)
	keys := map[string]bool{}
	for k := range b {
		keys[k] = true
	}
	for k := range a {
		keys[k] = true
	}
	var out []SymbolChange
	for k := range keys {
		bs, as := b[k], a[k]
		for i := 0; i < len(bs) || i < len(as); i++ {
			switch {
			case i >= len(as):
				out = append(out, SymbolChange{Kind: Removed, Before: bs[i]})
			case i >= len(bs):
				out = append(out, SymbolChange{Kind: Added, After: as[i]})
			case !sameCode(bs[i], as[i]):
				out = append(out, SymbolChange{Kind: Changed, Before: bs[i], After: as[i]})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Symbol() < out[j].Symbol() })
	return out
}

// sameCode reports whether two functions have the same code bytes and the
// same normalised relocations.
func sameCode(x, y *Func) bool {
	if !bytes.Equal(x.Code, y.Code) || len(x.Relocs) != len(y.Relocs) {
		return false
	}
	for i := range x.Relocs {
		if x.Relocs[i] != y.Relocs[i] {
			return false
		}
	}
	return true
}
