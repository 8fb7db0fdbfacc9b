package analyze

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"path"
	"sort"
)

// Inlining is what the debug information of an object says about
// inlining: for each function with code of its own, the functions
// inlined into it.
type Inlining struct {
	// Into maps a function (its base name) to the functions inlined
	// into it, by name, at any depth.
	Into map[string]map[string]bool
	// Local holds the functions defined in the compiled .c file itself
	// (not in a header) and not visible outside it: static functions.
	Local map[string]bool
}

// ReadInlining reads the DWARF of a relocatable object. An object built
// without debug information gives an empty Inlining and no error.
func ReadInlining(data []byte) (*Inlining, error) {
	in := &Inlining{Into: map[string]map[string]bool{}, Local: map[string]bool{}}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Section(".debug_info") == nil {
		return in, nil
	}
	d, err := f.DWARF()
	if err != nil {
		return nil, err
	}
	r := d.Reader()
	var cuFile string
	var files []*dwarf.LineFile
	// stack holds, per open DIE with children, the concrete function
	// it belongs to ("" outside any).
	var stack []string
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		if e.Tag == 0 { // end of a DIE's children
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		cur := ""
		if len(stack) > 0 {
			cur = stack[len(stack)-1]
		}
		switch e.Tag {
		case dwarf.TagCompileUnit:
			cuFile, _ = e.Val(dwarf.AttrName).(string)
			files = nil
			if lr, err := d.LineReader(e); err == nil && lr != nil {
				files = lr.Files()
			}
		case dwarf.TagSubprogram:
			name := dieName(d, e)
			if e.Val(dwarf.AttrLowpc) != nil || e.Val(dwarf.AttrRanges) != nil {
				cur = name // a concrete, out-of-line instance
			}
			if ext, _ := e.Val(dwarf.AttrExternal).(bool); !ext && name != "" && e.Val(dwarf.AttrAbstractOrigin) == nil {
				if fi, ok := e.Val(dwarf.AttrDeclFile).(int64); ok && fi >= 0 && int(fi) < len(files) && files[fi] != nil &&
					sameFile(files[fi].Name, cuFile) {
					in.Local[name] = true
				}
			}
		case dwarf.TagInlinedSubroutine:
			if cur != "" {
				if name := dieName(d, e); name != "" {
					if in.Into[cur] == nil {
						in.Into[cur] = map[string]bool{}
					}
					in.Into[cur][name] = true
				}
			}
		}
		if e.Children {
			stack = append(stack, cur)
		}
	}
	return in, nil
}

// sameFile reports whether a line-table file name and the compile unit's
// name are the same source file.
func sameFile(a, b string) bool {
	return a == b || path.Base(a) == path.Base(b) && (path.IsAbs(a) != path.IsAbs(b))
}

// dieName is a DIE's name, following abstract_origin and specification.
func dieName(d *dwarf.Data, e *dwarf.Entry) string {
	for i := 0; i < 4 && e != nil; i++ {
		if n, ok := e.Val(dwarf.AttrName).(string); ok {
			return n
		}
		off, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			off, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if !ok {
			return ""
		}
		r := d.Reader()
		r.Seek(off)
		e, _ = r.Next()
	}
	return ""
}

// inlinedInto returns the functions inlined into fn, sorted.
func (in *Inlining) inlinedInto(fn string) []string {
	var out []string
	for n := range in.Into[fn] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
