package analyze

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// livepatchSource is shaped like a livepatch module's source: klp_func
// and klp_object arrays as the kernel declares them (the fields after the
// first two stand in for the kernel's own, whose layout does not matter).
const livepatchSource = `
struct klp_func {
	const char *old_name;
	void *new_func;
	unsigned long old_sympos;
	void *kobj[8];
	int nop, patched, transition;
};
struct klp_object {
	const char *name;
	struct klp_func *funcs;
	void *callbacks[4];
	int dynamic, patched;
};
struct klp_patch { void *mod; struct klp_object *objs; int replace; };

static int new_vfs_tmpfile(void) { return 1; }
static int new_timens(void) { return 2; }
static int new_xfs_fn(void) { return 3; }

static struct klp_func funcs[] = {
	{ .old_name = "vfs_tmpfile", .new_func = new_vfs_tmpfile },
	{ .old_name = "proc_timens_set_offset", .new_func = new_timens },
	{ }
};
static struct klp_func xfs_funcs[] = {
	{ .old_name = "xfs_fn", .new_func = new_xfs_fn, .old_sympos = 1 },
	{ }
};
static struct klp_object objs[] = {
	{ .funcs = funcs },
	{ .name = "xfs", .funcs = xfs_funcs },
	{ }
};
struct klp_patch patch = { .objs = objs, .replace = 1 };
`

func TestKlpFuncs(t *testing.T) {
	got, err := KlpFuncs(compile(t, "livepatch", livepatchSource))
	if err != nil {
		t.Fatal(err)
	}
	if s, want := fmt.Sprint(got), "[vmlinux:proc_timens_set_offset vmlinux:vfs_tmpfile xfs:xfs_fn]"; s != want {
		t.Errorf("KlpFuncs = %s; want %s", s, want)
	}
}

func TestKlpFuncsNotALivepatch(t *testing.T) {
	_, err := KlpFuncs(compile(t, "plain", "int f(void) { return 1; }\n"))
	if err == nil || !strings.Contains(err.Error(), "no klp_object") {
		t.Errorf("KlpFuncs of a plain object: %v; want no klp_object", err)
	}
}

func TestCheck(t *testing.T) {
	ko := compile(t, "livepatch", livepatchSource)
	analysis := func(targets ...Target) *Analysis {
		return &Analysis{Format: Format, Kernel: KernelInfo{Release: "6.1.0-47-amd64", Version: "6.1.170-3"},
			Patch: PatchInfo{File: "fix.patch"}, Replace: targets}
	}
	vfs := Target{"vmlinux", "vfs_tmpfile"}
	tmpfile := Target{"vmlinux", "do_tmpfile"}
	xfs := Target{"xfs", "xfs_fn"}
	xfsInVmlinux := Target{"vmlinux", "xfs_fn"}

	if err := Check(analysis(vfs, xfs), ko, "6.1.0-47-amd64"); err != nil {
		t.Errorf("a livepatch replacing every listed function: %v", err)
	}
	for _, tc := range []struct {
		name    string
		a       *Analysis
		missing string
	}{
		{"one_missing", analysis(vfs, tmpfile), "vmlinux:do_tmpfile"},
		{"wrong_object", analysis(xfsInVmlinux), "vmlinux:xfs_fn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.a, ko, "6.1.0-47-amd64")
			var me *MissingError
			if !errors.Is(err, ErrMissingFunctions) || !errors.As(err, &me) {
				t.Fatalf("Check: %v; want ErrMissingFunctions", err)
			}
			if got := fmt.Sprint(me.Missing); got != "["+tc.missing+"]" {
				t.Errorf("missing %s; want [%s]", got, tc.missing)
			}
			want := "the livepatch does not replace every changed function: it lacks " + tc.missing + ", which the analysis of fix.patch on 6.1.0-47-amd64 lists"
			if err.Error() != want {
				t.Errorf("error %q; want %q", err, want)
			}
		})
	}
	if err := Check(analysis(vfs), ko, "6.1.0-57-amd64"); !errors.Is(err, ErrWrongKernel) {
		t.Errorf("a module for another kernel: %v; want ErrWrongKernel", err)
	}
}
