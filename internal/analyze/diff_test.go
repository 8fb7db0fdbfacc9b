package analyze

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// compile builds C source into an object the way analyze builds kernel
// objects: optimised, one section per function and per variable.
func compile(t *testing.T, name, src string) []byte {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("gcc: %v", err)
		}
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	c := filepath.Join(dir, name+".c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	o := filepath.Join(dir, name+".o")
	cmd := exec.Command("gcc", "-O2", "-g", "-fno-pic", "-mcmodel=kernel", "-ffunction-sections", "-fdata-sections", "-c", "-o", o, c)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	data, err := os.ReadFile(o)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func diffSources(t *testing.T, before, after string) ([]SymbolChange, *Object, *Object) {
	t.Helper()
	b, err := ReadObject(compile(t, "before", before))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ReadObject(compile(t, "after", after))
	if err != nil {
		t.Fatal(err)
	}
	return DiffObjects(b, a), b, a
}

// summary is "kind symbol" per change, one per line.
func summary(cs []SymbolChange) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(string(c.Kind) + " " + c.Symbol() + "\n")
	}
	return b.String()
}

func TestCloneKey(t *testing.T) {
	for _, tc := range []struct{ in, key, base string }{
		{"vfs_tmpfile", "vfs_tmpfile", "vfs_tmpfile"},
		{"do_tmpfile.isra.0", "do_tmpfile.isra", "do_tmpfile"},
		{"proc_timens_set_offset.cold", "proc_timens_set_offset.cold", "proc_timens_set_offset"},
		{"kmalloc_array.constprop.0.isra.0", "kmalloc_array.constprop.isra", "kmalloc_array"},
		{"path_openat.part.0", "path_openat.part", "path_openat"},
		{"audit_log_cap.cold.12", "audit_log_cap.cold", "audit_log_cap"},
		{"__key.12", "__key", "__key"},
		{"__already_done.3", "__already_done", "__already_done"},
		{"CSWTCH.165", "CSWTCH", "CSWTCH"},
		{"__UNIQUE_ID_ddebug412.36", "__UNIQUE_ID_ddebug412", "__UNIQUE_ID_ddebug412"},
	} {
		if got := cloneKey(tc.in); got != tc.key {
			t.Errorf("cloneKey(%q) = %q; want %q", tc.in, got, tc.key)
		}
		if got := baseName(tc.in); got != tc.base {
			t.Errorf("baseName(%q) = %q; want %q", tc.in, got, tc.base)
		}
	}
}

const common = `
extern int ext_a(int);
extern int ext_b(int);
extern void log_str(const char *);
`

func TestDiffBodyChange(t *testing.T) {
	cs, _, _ := diffSources(t,
		common+"int f(int x) { return ext_a(x) + 1; }\nint g(int x) { return x * 2; }\n",
		common+"int f(int x) { return ext_a(x) + 7; }\nint g(int x) { return x * 2; }\n")
	if got, want := summary(cs), "changed f\n"; got != want {
		t.Errorf("changes:\n%swant:\n%s", got, want)
	}
}

// TestDiffRelocationOnly: a call that now goes to another function leaves
// the code bytes alone and changes only a relocation; it is a change.
func TestDiffRelocationOnly(t *testing.T) {
	cs, b, a := diffSources(t,
		common+"int h(int x) { return ext_a(x) * 3; }\n",
		common+"int h(int x) { return ext_b(x) * 3; }\n")
	if got, want := summary(cs), "changed h\n"; got != want {
		t.Fatalf("changes:\n%swant:\n%s", got, want)
	}
	if !bytes.Equal(b.Funcs["h"].Code, a.Funcs["h"].Code) {
		t.Errorf("code bytes differ; want only the relocation to differ")
	}
	var targets []string
	for _, r := range a.Funcs["h"].Relocs {
		targets = append(targets, r.Target)
	}
	if !strings.Contains(strings.Join(targets, " "), "ext_b") {
		t.Errorf("relocations of h after = %v; want one to ext_b", a.Funcs["h"].Relocs)
	}
}

// TestDiffShiftedNeighbours: a new function and a new variable, placed by
// GCC ahead of an unchanged function's variable in a section they share
// (as the kernel's __read_mostly and friends do), move that variable; normalised, the
// unchanged function compares equal. counter++ is "addl $1, x(%rip)",
// whose relocation addend also counts the immediate after it.
func TestDiffShiftedNeighbours(t *testing.T) {
	cs, _, _ := diffSources(t,
		common+`
static int counter __attribute__((section(".data.shared")));
void p(void) { log_str("hello"); counter++; }
`,
		common+`
static int counter __attribute__((section(".data.shared")));
static int other_counter __attribute__((section(".data.shared")));
void q(void) { log_str("a new string first"); other_counter++; }
void p(void) { log_str("hello"); counter++; }
`)
	if got, want := summary(cs), "new q\n"; got != want {
		t.Errorf("changes:\n%swant:\n%s", got, want)
	}
}

// TestDiffStringChange: the same code printing another string is a change.
func TestDiffStringChange(t *testing.T) {
	cs, _, _ := diffSources(t,
		common+`void p(void) { log_str("inode=%lu"); }`+"\n",
		common+`void p(void) { log_str("inode=%llu"); }`+"\n")
	if got, want := summary(cs), "changed p\n"; got != want {
		t.Errorf("changes:\n%swant:\n%s", got, want)
	}
}

// TestDiffClones: GCC makes a constprop clone of a static function called
// with a constant; a change to that function shows as a change of the
// clone, matched across builds by kind and attributed to its function.
func TestDiffClones(t *testing.T) {
	src := func(k string) string {
		return common + `
static __attribute__((noinline)) int scale(int x, int factor)
{
	return ext_a(x) * factor + ` + k + `;
}
int user1(int x) { return scale(x, 5); }
int user2(int x) { return scale(x + 1, 5); }
`
	}
	cs, b, _ := diffSources(t, src("1"), src("2"))
	var clone string
	for name := range b.Funcs {
		if strings.HasPrefix(name, "scale.") {
			clone = name
		}
	}
	if clone == "" {
		t.Fatalf("gcc made no clone of scale; functions: %v", names(b))
	}
	if got, want := summary(cs), "changed "+clone+"\n"; got != want {
		t.Fatalf("changes:\n%swant:\n%s", got, want)
	}
	if cs[0].Base() != "scale" || !cs[0].Before.IsClone() {
		t.Errorf("%s: base %q, clone %v; want base scale, a clone", clone, cs[0].Base(), cs[0].Before.IsClone())
	}
}

// TestDiffInlinedCallee: a static helper inlined into its callers has no
// symbol; changing it changes every caller, and nothing else.
func TestDiffInlinedCallee(t *testing.T) {
	src := func(k string) string {
		return common + `
static inline int helper(int x) { return ext_a(x) + ` + k + `; }
int caller1(int x) { return helper(x) * 3; }
int caller2(int x) { return helper(x) - 9; }
int bystander(int x) { return ext_b(x); }
`
	}
	cs, b, _ := diffSources(t, src("1"), src("2"))
	if _, ok := b.Funcs["helper"]; ok {
		t.Fatalf("gcc kept helper out of line")
	}
	if got, want := summary(cs), "changed caller1\nchanged caller2\n"; got != want {
		t.Errorf("changes:\n%swant:\n%s", got, want)
	}
	in, err := ReadInlining(compile(t, "after", src("2")))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"caller1", "caller2"} {
		if got := in.inlinedInto(c); len(got) != 1 || got[0] != "helper" {
			t.Errorf("inlined into %s: %v; want [helper]", c, got)
		}
	}
	if got := in.inlinedInto("bystander"); len(got) != 0 {
		t.Errorf("inlined into bystander: %v; want none", got)
	}
	if !in.Local["helper"] || in.Local["caller1"] {
		t.Errorf("local functions %v; want helper and not caller1", in.Local)
	}
}

func names(o *Object) []string {
	var n []string
	for k := range o.Funcs {
		n = append(n, k)
	}
	return n
}
