package analyze

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unifiedDiff is `diff -u` of two versions of a.c, as a -p1 patch.
func unifiedDiff(t *testing.T, before, after string) []byte {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "a", "x.c"), []byte(before), 0o644)
	os.WriteFile(filepath.Join(dir, "b", "x.c"), []byte(after), 0o644)
	cmd := exec.Command("diff", "-u", "a/x.c", "b/x.c")
	cmd.Dir = dir
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("diff -u: %v", err)
	}
	return out
}

// TestCompareInlinedCaller is the case a livepatch most easily misses: the
// patch changes a static helper that GCC inlined, so the functions to
// replace are its callers, and the author must copy the helper.
func TestCompareInlinedCaller(t *testing.T) {
	before := common + `
static inline int check(int x)
{
	return x > 10;
}

int open_a(int x)
{
	if (check(x))
		return -1;
	return ext_a(x);
}

int open_b(int x)
{
	if (check(x + 1))
		return -1;
	return ext_b(x);
}

int unrelated(int x)
{
	return ext_b(x) + 4;
}
`
	after := strings.Replace(before, "return x > 10;", "return x > 10 || x < 0;", 1)
	patch := unifiedDiff(t, before, after)
	files, err := ParsePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Path != "x.c" {
		t.Fatalf("patch files %+v; want x.c", files)
	}
	patched := touchedFunctions([]byte(after), files[0].Lines)
	if fmt.Sprint(patched) != "[check]" {
		t.Fatalf("touched functions %v; want [check]", patched)
	}
	res, notes, err := compare("x.o", "x.c", "vmlinux", compile(t, "before", before), compile(t, "after", after), patched)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range res.Functions {
		got = append(got, fmt.Sprintf("%s %s %s", f.Symbol, f.Change, f.Why))
	}
	if s, want := strings.Join(got, "\n"), "open_a changed inlines check\nopen_b changed inlines check"; s != want {
		t.Errorf("functions:\n%s\nwant:\n%s", s, want)
	}
	if s, want := fmt.Sprint(replaceTargets([]ObjectRes{res})), "[vmlinux:open_a vmlinux:open_b]"; s != want {
		t.Errorf("replace %s; want %s", s, want)
	}
	want := "x.o: check has no symbol in the running kernel: it is inlined into open_a, open_b, which the livepatch must replace; copy check into the livepatch"
	if len(notes) != 1 || notes[0] != want {
		t.Errorf("notes %q; want [%q]", notes, want)
	}
}

// TestCompareCloneCallee: the fixed function calls a static helper the
// running kernel has only as a constprop clone; the livepatch must carry
// its own copy, and the analysis says so.
func TestCompareCloneCallee(t *testing.T) {
	before := common + `
static __attribute__((noinline)) int scale(int x, int factor)
{
	return ext_a(x) * factor;
}

int user(int x)
{
	return scale(x, 5);
}

int fixed(int x)
{
	return scale(x + 1, 5);
}
`
	after := strings.Replace(before, "return scale(x + 1, 5);", "if (x < 0)\n\t\treturn 0;\n\treturn scale(x + 1, 5);", 1)
	files, err := ParsePatch(unifiedDiff(t, before, after))
	if err != nil {
		t.Fatal(err)
	}
	patched := touchedFunctions([]byte(after), files[0].Lines)
	b, a := compile(t, "before", before), compile(t, "after", after)
	bo, err := ReadObject(b)
	if err != nil {
		t.Fatal(err)
	}
	var clone string
	for name := range bo.Funcs {
		if strings.HasPrefix(name, "scale.") {
			clone = name
		}
	}
	if clone == "" {
		t.Fatalf("gcc made no clone of scale: %v", names(bo))
	}
	res, notes, err := compare("x.o", "x.c", "vmlinux", b, a, patched)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(replaceTargets([]ObjectRes{res})); s != "[vmlinux:fixed]" {
		t.Errorf("replace %s; want [vmlinux:fixed]", s)
	}
	want := "x.o: fixed calls the static scale through " + clone + ", a copy GCC specialised: the livepatch cannot call it; copy scale into the livepatch"
	if len(notes) != 1 || notes[0] != want {
		t.Errorf("notes %q; want [%q]", notes, want)
	}
}

func TestParsePatch(t *testing.T) {
	for _, tc := range []struct {
		name, patch string
		want        string
		err         string
	}{
		{"add", "--- a/k/t.c\n+++ b/k/t.c\n@@ -3,3 +3,4 @@ f\n a\n+b\n c\n d\n", "[{k/t.c [4]}]", ""},
		{"delete", "--- a/k/t.c\n+++ b/k/t.c\n@@ -3,3 +3,2 @@\n a\n-b\n c\n", "[{k/t.c [4]}]", ""},
		{"two_files", "--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n--- a/y.h\n+++ b/y.h\n@@ -1,0 +2 @@\n+c\n", "[{x.c [1 1]} {y.h [2]}]", ""},
		{"short_hunk", "--- a/x.c\n+++ b/x.c\n@@ -1,3 +1,3 @@\n a\n", "", "cut short"},
		{"escape", "--- a/x.c\n+++ b/../x.c\n@@ -1 +1 @@\n-a\n+b\n", "", "inside the tree"},
		{"deleted_file", "--- a/x.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n", "", "deletes a file"},
		{"empty", "hello\n", "", "no file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePatch([]byte(tc.patch))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != tc.want {
				t.Errorf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestTouchedFunctions finds the functions around changed lines in the
// kernel's style: declarators over several lines, initialisers that are
// not functions, a line just after a function.
func TestTouchedFunctions(t *testing.T) {
	src := `static const struct proc_ns_operations timens_operations = {
	.name		= "time",
	.get		= timens_get,
};

static int vfs_tmpfile(struct user_namespace *mnt_userns,
		       const struct path *parentpath,
		       struct file *file, umode_t mode)
{
	int error;
	return error;
}

int proc_timens_set_offset(struct file *file, struct task_struct *p)
{
	return 0;
}
`
	for _, tc := range []struct {
		lines []int
		want  string
	}{
		{[]int{2}, "[]"},
		{[]int{10}, "[vfs_tmpfile]"},
		{[]int{7, 16}, "[proc_timens_set_offset vfs_tmpfile]"},
		{[]int{13}, "[]"},
	} {
		if got := fmt.Sprint(touchedFunctions([]byte(src), tc.lines)); got != tc.want {
			t.Errorf("lines %v: %s; want %s", tc.lines, got, tc.want)
		}
	}
}
