package analyze

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrMissingFunctions means a livepatch does not replace every function
// an analysis lists.
var ErrMissingFunctions = errors.New("the livepatch does not replace every changed function")

// ErrWrongKernel means a livepatch was built for another kernel than the
// one an analysis is about.
var ErrWrongKernel = errors.New("the livepatch and the analysis are for different kernels")

// MissingError names the functions a livepatch lacks.
type MissingError struct {
	Analysis string   // what was analysed: "fix.patch on 6.1.0-47-amd64"
	Missing  []Target // sorted
}

func (e *MissingError) Error() string {
	names := make([]string, len(e.Missing))
	for i, t := range e.Missing {
		names[i] = t.String()
	}
	return fmt.Sprintf("%v: it lacks %s, which the analysis of %s lists", ErrMissingFunctions, strings.Join(names, ", "), e.Analysis)
}

func (e *MissingError) Unwrap() error { return ErrMissingFunctions }

// ReadAnalysis parses an analysis file written by `kcare-build analyze`.
func ReadAnalysis(data []byte) (*Analysis, error) {
	var a Analysis
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("read analysis: %w", err)
	}
	if a.Format < 1 || a.Format > Format {
		return nil, fmt.Errorf("read analysis: format %d; this kcare-build reads 1 to %d", a.Format, Format)
	}
	if a.Kernel.Release == "" || a.Replace == nil {
		return nil, errors.New("read analysis: no kernel release or no replace list")
	}
	return &a, nil
}

// Check refuses a livepatch module (a .ko) built for release that does
// not replace every function the analysis lists: each Target must be the
// old_name of a klp_func in the klp_object of that name.
func Check(a *Analysis, ko []byte, release string) error {
	if release != a.Kernel.Release {
		return fmt.Errorf("%w: the module is for %s, the analysis of %s for %s", ErrWrongKernel, release, a.Patch.File, a.Kernel.Release)
	}
	funcs, err := KlpFuncs(ko)
	if err != nil {
		return err
	}
	has := map[Target]bool{}
	for _, f := range funcs {
		has[f] = true
	}
	var missing []Target
	for _, t := range a.Replace {
		if !has[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return &MissingError{Analysis: a.Patch.File + " on " + a.Kernel.Release, Missing: missing}
	}
	return nil
}

// KlpFuncs returns the functions a livepatch module replaces, read from
// the relocations of its klp_object and klp_func arrays:
//
//	struct klp_object { const char *name; struct klp_func *funcs; ... }
//	struct klp_func   { const char *old_name; void *new_func; ... }
//
// A klp_func is a pointer to a string followed by a pointer to code; a
// klp_object is an optional pointer to a string (NULL for vmlinux)
// followed by a pointer to an array of klp_funcs, which ends where its
// symbol ends. The layout of the rest of either struct does not matter.
func KlpFuncs(ko []byte) ([]Target, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("read livepatch: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_REL || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("read livepatch: not an x86-64 kernel module")
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("read livepatch: %w", err)
	}
	type place struct {
		sec int
		off uint64
	}
	// Every absolute 64-bit pointer the module's data holds.
	ptrs := map[place]place{}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA || int(s.Info) >= len(f.Sections) || int(s.Info) == 0 {
			continue
		}
		if f.Sections[s.Info].Flags&elf.SHF_EXECINSTR != 0 || f.Sections[s.Info].Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		d, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("read livepatch: %s: %w", s.Name, err)
		}
		for i := 0; i+24 <= len(d); i += 24 {
			info := f.ByteOrder.Uint64(d[i+8:])
			if elf.R_X86_64(uint32(info)) != elf.R_X86_64_64 {
				continue
			}
			si := int(info>>32) - 1
			if si < 0 || si >= len(syms) || syms[si].Section == elf.SHN_UNDEF || int(syms[si].Section) >= len(f.Sections) {
				continue
			}
			to := place{int(syms[si].Section), syms[si].Value + f.ByteOrder.Uint64(d[i+16:])}
			ptrs[place{int(s.Info), f.ByteOrder.Uint64(d[i:])}] = to
		}
	}
	str := func(p place) (string, bool) {
		s := f.Sections[p.sec]
		if s.Flags&elf.SHF_EXECINSTR != 0 || s.Type == elf.SHT_NOBITS {
			return "", false
		}
		d, err := s.Data()
		if err != nil || p.off >= uint64(len(d)) {
			return "", false
		}
		b := d[p.off:]
		n := bytes.IndexByte(b, 0)
		if n <= 0 {
			return "", false
		}
		return string(b[:n]), true
	}
	isCode := func(p place) bool { return f.Sections[p.sec].Flags&elf.SHF_EXECINSTR != 0 }
	isFunc := func(p place) (string, bool) {
		name, ok := ptrs[p]
		if !ok {
			return "", false
		}
		code, ok := ptrs[place{p.sec, p.off + 8}]
		if !ok || !isCode(code) {
			return "", false
		}
		return str(name)
	}
	// extent is the end of the symbol that starts at p.
	extent := func(p place) (uint64, bool) {
		for _, s := range syms {
			if int(s.Section) == p.sec && s.Value == p.off && s.Size > 0 && elf.ST_TYPE(s.Info) == elf.STT_OBJECT {
				return s.Value + s.Size, true
			}
		}
		return 0, false
	}

	var out []Target
	seen := map[Target]bool{}
	found := false
	for at, to := range ptrs {
		if at.off < 8 {
			continue
		}
		if _, ok := isFunc(to); !ok {
			continue
		}
		// at is a klp_object's funcs; its name comes 8 bytes before.
		obj := "vmlinux"
		if name, ok := ptrs[place{at.sec, at.off - 8}]; ok {
			s, ok := str(name)
			if !ok {
				continue
			}
			obj = s
		}
		end, ok := extent(to)
		if !ok {
			return nil, fmt.Errorf("read livepatch: no symbol gives the size of the klp_func array at %s+%#x", f.Sections[to.sec].Name, to.off)
		}
		found = true
		for off := to.off; off < end; off += 8 {
			if name, ok := isFunc(place{to.sec, off}); ok {
				t := Target{Object: obj, Function: name}
				if !seen[t] {
					seen[t] = true
					out = append(out, t)
				}
			}
		}
	}
	if !found {
		return nil, errors.New("read livepatch: no klp_object with klp_funcs in it; is it a livepatch module?")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}
