package analyze

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/flock"
)

// Format is the version of the analysis file; fields are only added.
const Format = 1

// Analysis is what a fix changes in a kernel's machine code: the stable
// result `kcare-build analyze --json` writes and `--check-against` reads.
type Analysis struct {
	Format   int         `json:"format"`
	Kernel   KernelInfo  `json:"kernel"`
	Patch    PatchInfo   `json:"patch"`
	Compiler string      `json:"compiler"`
	Flags    string      `json:"flags"`
	Objects  []ObjectRes `json:"objects"`
	// Replace lists every function of the running kernel a livepatch
	// for this fix must replace.
	Replace []Target `json:"replace"`
	Notes   []string `json:"notes"`
}

// KernelInfo names the kernel analysed.
type KernelInfo struct {
	Release string `json:"release"` // "6.1.0-47-amd64"
	Version string `json:"version"` // Debian package version, "6.1.170-3"
}

// PatchInfo names the fix analysed.
type PatchInfo struct {
	File   string `json:"file"` // base name
	SHA256 string `json:"sha256"`
}

// ObjectRes is the result for one object the patch touches.
type ObjectRes struct {
	Source    string `json:"source"`     // "fs/namei.c"
	Object    string `json:"object"`     // "fs/namei.o"
	KlpObject string `json:"klp_object"` // "vmlinux" or a module's name
	// Patched lists the functions whose source lines the patch changes.
	Patched   []string  `json:"patched"`
	Functions []FuncRes `json:"functions"`
}

// FuncRes is one function symbol whose code differs.
type FuncRes struct {
	Symbol   string `json:"symbol"`   // as in the running kernel ("foo.isra.0"), or the new one
	Function string `json:"function"` // the source function
	Change   Kind   `json:"change"`
	Global   bool   `json:"global"`
	// Why: "patched" (its own lines changed), "inlines F, G" (a patched
	// function is inlined into it) or "code" (neither: its code changed
	// all the same).
	Why string `json:"why"`
}

// Target is a function a livepatch must replace: its klp_func old_name
// in a klp_object.
type Target struct {
	Object   string `json:"object"` // "vmlinux" or a module's name
	Function string `json:"function"`
}

func (t Target) String() string { return t.Object + ":" + t.Function }

// Options says what to analyse.
type Options struct {
	Release   string // the Debian kernel release, "6.1.0-47-amd64"
	Patch     []byte // the fix, a unified diff for patch -p1
	PatchName string
	// Objects are objects to build besides those of the .c files the
	// patch changes (a patch to a header names the objects including it).
	Objects []string
	Source  SourceOptions
}

// ErrNoObjects means the patch changes no .c file and no object was named.
var ErrNoObjects = errors.New("nothing to build")

// Run prepares the kernel's source (once per release), builds every
// object the patch touches before and after it, and compares them.
func Run(ctx context.Context, o Options) (*Analysis, error) {
	logf := o.Source.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	files, err := ParsePatch(o.Patch)
	if err != nil {
		return nil, err
	}
	var paths []string
	objects := map[string]string{} // object -> source
	var headers []string
	for _, f := range files {
		paths = append(paths, f.Path)
		switch {
		case strings.HasSuffix(f.Path, ".c"):
			objects[strings.TrimSuffix(f.Path, ".c")+".o"] = f.Path
		case strings.HasSuffix(f.Path, ".h"):
			headers = append(headers, f.Path)
		}
	}
	for _, obj := range o.Objects {
		if err := checkTreePath(obj); err != nil || !strings.HasSuffix(obj, ".o") {
			return nil, fmt.Errorf("object %q: not a path to a .o inside the kernel tree", obj)
		}
		objects[obj] = strings.TrimSuffix(obj, ".o") + ".c"
	}
	if len(objects) == 0 {
		return nil, fmt.Errorf("%w: the patch changes no .c file; name the objects that include %s", ErrNoObjects, strings.Join(headers, ", "))
	}
	src, err := Prepare(ctx, o.Release, o.Source)
	if err != nil {
		return nil, err
	}
	unlock, err := flock.Path(ctx, filepath.Join(o.Source.Cache, ".lock"), 0o666, flock.Forever)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := src.recoverTree(); err != nil {
		return nil, fmt.Errorf("restore the tree after an interrupted run: %w", err)
	}

	objs := make([]string, 0, len(objects))
	for obj := range objects {
		objs = append(objs, obj)
	}
	sort.Strings(objs)
	before := map[string][]byte{}
	after := map[string][]byte{}
	patchedSrc := map[string][]byte{}
	for _, obj := range objs {
		start := time.Now()
		if before[obj], err = src.BuildObject(ctx, obj); err != nil {
			return nil, err
		}
		logf("analyze: built %s before the patch: %s", obj, time.Since(start).Round(time.Millisecond))
	}
	err = src.withPatch(ctx, o.Patch, paths, func() error {
		for _, obj := range objs {
			start := time.Now()
			var err error
			if after[obj], err = src.BuildObject(ctx, obj); err != nil {
				return err
			}
			logf("analyze: built %s after the patch: %s", obj, time.Since(start).Round(time.Millisecond))
			if patchedSrc[obj], err = os.ReadFile(filepath.Join(src.Dir, objects[obj])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	sum := sha256.Sum256(o.Patch)
	a := &Analysis{
		Format:   Format,
		Kernel:   KernelInfo{Release: src.Release, Version: src.Version},
		Patch:    PatchInfo{File: filepath.Base(o.PatchName), SHA256: hex.EncodeToString(sum[:])},
		Compiler: src.CC,
		Flags:    BuildFlags,
		Objects:  []ObjectRes{},
		Replace:  []Target{},
		Notes:    []string{},
	}
	lines := map[string][]int{}
	for _, f := range files {
		lines[f.Path] = f.Lines
	}
	for _, obj := range objs {
		klpObj, err := src.klpObject(obj)
		if err != nil {
			return nil, err
		}
		res, notes, err := compare(obj, objects[obj], klpObj, before[obj], after[obj], touchedFunctions(patchedSrc[obj], lines[objects[obj]]))
		if err != nil {
			return nil, err
		}
		a.Objects = append(a.Objects, res)
		a.Notes = append(a.Notes, notes...)
	}
	a.Replace = replaceTargets(a.Objects)
	return a, nil
}

// compare diffs one object's two builds and explains each change.
func compare(obj, source, klpObj string, beforeData, afterData []byte, patched []string) (ObjectRes, []string, error) {
	res := ObjectRes{Source: source, Object: obj, KlpObject: klpObj, Patched: patched, Functions: []FuncRes{}}
	if res.Patched == nil {
		res.Patched = []string{}
	}
	b, err := ReadObject(beforeData)
	if err != nil {
		return res, nil, fmt.Errorf("%s before the patch: %w", obj, err)
	}
	a, err := ReadObject(afterData)
	if err != nil {
		return res, nil, fmt.Errorf("%s after the patch: %w", obj, err)
	}
	inl, err := ReadInlining(afterData)
	if err != nil {
		return res, nil, fmt.Errorf("%s after the patch: debug information: %w", obj, err)
	}
	inlBefore, err := ReadInlining(beforeData)
	if err != nil {
		return res, nil, fmt.Errorf("%s before the patch: debug information: %w", obj, err)
	}
	isPatched := map[string]bool{}
	for _, p := range patched {
		isPatched[p] = true
	}
	changes := DiffObjects(b, a)
	for _, c := range changes {
		f := c.Before
		if f == nil {
			f = c.After
		}
		why := "code"
		if isPatched[c.Base()] {
			why = "patched"
		} else {
			var via []string
			for _, n := range inl.inlinedInto(c.Base()) {
				if isPatched[n] {
					via = append(via, n)
				}
			}
			if len(via) > 0 {
				why = "inlines " + strings.Join(via, ", ")
			}
		}
		res.Functions = append(res.Functions, FuncRes{Symbol: c.Symbol(), Function: c.Base(), Change: c.Kind, Global: f.Global, Why: why})
	}

	// What the author must know about the patched functions and about
	// the static functions the new code inlines.
	var notes []string
	symbolsOf := func(o *Object, fn string) (plain bool, clones []string) {
		for name, f := range o.Funcs {
			if f.Base != fn {
				continue
			}
			if name == fn {
				plain = true
			} else if !strings.Contains(f.Key, ".cold") {
				clones = append(clones, name)
			}
		}
		sort.Strings(clones)
		return plain, clones
	}
	callersOf := func(fn string) []string {
		var out []string
		for _, r := range res.Functions {
			if strings.HasPrefix(r.Why, "inlines ") && containsWord(strings.TrimPrefix(r.Why, "inlines "), fn) {
				out = append(out, r.Symbol)
			}
		}
		return out
	}
	for _, p := range patched {
		plain, clones := symbolsOf(b, p)
		switch {
		case plain:
		case len(clones) > 0:
			notes = append(notes, fmt.Sprintf("%s: %s exists in the running kernel only as %s, a copy GCC specialised (its arguments may differ from the source's); the livepatch must replace %s, and any new code calling %s must carry its own copy of it",
				obj, p, strings.Join(clones, ", "), strings.Join(clones, ", "), p))
		default:
			callers := callersOf(p)
			if len(callers) > 0 {
				notes = append(notes, fmt.Sprintf("%s: %s has no symbol in the running kernel: it is inlined into %s, which the livepatch must replace; copy %s into the livepatch",
					obj, p, strings.Join(callers, ", "), p))
			} else {
				notes = append(notes, fmt.Sprintf("%s: %s has no symbol in the running kernel and no function inlining it changed", obj, p))
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range res.Functions {
		if r.Change == Removed {
			continue
		}
		for _, callee := range inl.inlinedInto(r.Function) {
			if seen[callee] || isPatched[callee] || !(inl.Local[callee] || inlBefore.Local[callee]) {
				continue
			}
			seen[callee] = true
			plain, clones := symbolsOf(b, callee)
			switch {
			case plain:
			case len(clones) > 0:
				notes = append(notes, fmt.Sprintf("%s: %s calls the static %s, which exists in the running kernel only as %s: the livepatch cannot call it; copy %s into the livepatch",
					obj, r.Function, callee, strings.Join(clones, ", "), callee))
			default:
				notes = append(notes, fmt.Sprintf("%s: %s calls the static %s, which is inlined and has no symbol in the running kernel: the livepatch cannot call it; copy %s into the livepatch",
					obj, r.Function, callee, callee))
			}
		}
	}
	// Static callees the new code reaches only through a clone: a call
	// to "scale.constprop.0" is a call with GCC's own arguments, which
	// the livepatch's source cannot make.
	for _, c := range changes {
		if c.After == nil {
			continue
		}
		for _, r := range c.After.Relocs {
			callee := baseName(r.Target)
			if r.Target == callee || seen[callee] || isPatched[callee] || strings.HasPrefix(r.Target, "string ") {
				continue
			}
			var clones []string
			for name, f := range b.Funcs {
				if f.Key == r.Target && f.IsClone() && !f.Global {
					clones = append(clones, name)
				}
			}
			if len(clones) == 0 {
				continue
			}
			sort.Strings(clones)
			seen[callee] = true
			notes = append(notes, fmt.Sprintf("%s: %s calls the static %s through %s, a copy GCC specialised: the livepatch cannot call it; copy %s into the livepatch",
				obj, c.Base(), callee, strings.Join(clones, ", "), callee))
		}
	}
	return res, notes, nil
}

// coldPart is the suffix of the part of a function GCC moved out of line
// as unlikely to run; it is replaced with the function.
var coldPart = regexp.MustCompile(`\.cold(\.[0-9]+)?$`)

func containsWord(list, w string) bool {
	for _, x := range strings.Split(list, ", ") {
		if x == w {
			return true
		}
	}
	return false
}

// replaceTargets is every function of the running kernel whose code
// changed: a changed symbol, named as the kernel names it. A function's
// .cold part is replaced with the function itself; new functions are the
// livepatch's own; removed ones are no longer called by the replaced code.
func replaceTargets(objs []ObjectRes) []Target {
	seen := map[Target]bool{}
	out := []Target{}
	for _, o := range objs {
		for _, f := range o.Functions {
			if f.Change != Changed {
				continue
			}
			t := Target{Object: o.KlpObject, Function: coldPart.ReplaceAllString(f.Symbol, "")}
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Object != out[j].Object {
			return out[i].Object < out[j].Object
		}
		return out[i].Function < out[j].Function
	})
	return out
}
