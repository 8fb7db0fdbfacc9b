package cve

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	buildcli "github.com/kcare/kcare/cmd/kcare-build/cli"
	"github.com/kcare/kcare/internal/analyze"
	"github.com/kcare/kcare/test/vm/debkernel"
)

// LevelName is the livepatch module of cumulative level n: kcare_cve_l2.
func LevelName(n int) string { return fmt.Sprintf("kcare_cve_l%d", n) }

// Level says how to build one cumulative level of the fixes.
type Level struct {
	Kernel   *debkernel.Kernel
	Kallsyms string // the kernel's /proc/kallsyms dump (test/vm/guestsyms)
	// Fixes are the level's fixes, every one so far; Analyses their
	// analyses of Kernel, in the same order.
	Fixes    []Fix
	Analyses []string
	N        int    // the level
	SignKey  string // the publisher's private key
	Dir      string // where the module and the bundle go
	Released time.Time
	Logf     func(format string, args ...any)
}

// BuildLevel builds level l.N with kcare-build as a patch team does: one
// livepatch module from every fix's livepatch source (module --src …
// --kallsyms … --check-against each analysis), packed for the kernel image
// with the fixes' CVE ids, descriptions and URLs in the manifest, and
// signed. It returns the bundle's path (Dir/kcare_cve_lN.kcp, with .sig).
func BuildLevel(ctx context.Context, l Level) (string, error) {
	if len(l.Fixes) == 0 || len(l.Fixes) != len(l.Analyses) {
		return "", fmt.Errorf("level %d: %d fixes, %d analyses", l.N, len(l.Fixes), len(l.Analyses))
	}
	logf := l.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	name := LevelName(l.N)
	ko := filepath.Join(l.Dir, name+".ko")
	args := []string{"module", "--headers", l.Kernel.HeadersDir, "--kallsyms", l.Kallsyms, "--out", ko, "-v"}
	for i, f := range l.Fixes {
		args = append(args, "--src", f.Livepatch(), "--check-against", l.Analyses[i])
	}
	stderr, err := KcareBuild(ctx, args...)
	if err != nil {
		return "", fmt.Errorf("level %d: %w", l.N, err)
	}
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "klp: ") {
			logf("%s: %s", name, line)
		}
	}
	out := filepath.Join(l.Dir, name+".kcp")
	args = []string{"pack", "--module", ko, "--kernel", l.Kernel.Vmlinuz, "--level", fmt.Sprint(l.N),
		"--sign-key", l.SignKey, "--out", out, "--released", l.Released.UTC().Format(time.RFC3339),
		"--description", fmt.Sprintf("kcare CVE level %d", l.N)}
	for i, f := range l.Fixes {
		args = append(args, "--cve", f.CVE.ID+":"+f.CVE.Description, "--check-against", l.Analyses[i])
	}
	if _, err := KcareBuild(ctx, args...); err != nil {
		return "", fmt.Errorf("level %d: %w", l.N, err)
	}
	return out, nil
}

// Analyses returns the path of each fix's analysis of kernel k: the
// committed analysis.json when it is of k, else a new one made with
// kcare-build analyze's code in work (the source tree prepared once in
// cacheDir/analyze), since the vulnerable kernel the archive serves moves.
func Analyses(ctx context.Context, fixes []Fix, k *debkernel.Kernel, cacheDir, work string, logf func(string, ...any)) ([]string, error) {
	var out []string
	for _, f := range fixes {
		data, err := os.ReadFile(f.Analysis())
		if err != nil {
			return nil, err
		}
		a, err := analyze.ReadAnalysis(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Analysis(), err)
		}
		if a.Kernel.Release == k.Release {
			out = append(out, f.Analysis())
			continue
		}
		logf("%s/analysis.json is of %s; analysing the fix on %s", f.CVE.ID, a.Kernel.Release, k.Release)
		patch, err := os.ReadFile(f.Patch())
		if err != nil {
			return nil, err
		}
		a, err = analyze.Run(ctx, analyze.Options{Release: k.Release, Patch: patch, PatchName: "fix.patch",
			Source: analyze.SourceOptions{Cache: filepath.Join(cacheDir, "analyze"), Logf: logf}})
		if err != nil {
			return nil, fmt.Errorf("analyse %s on %s: %w", f.CVE.ID, k.Release, err)
		}
		data, err = jsonIndent(a)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(work, f.CVE.ID+"-analysis.json")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// KcareBuild runs kcare-build in-process and returns its stderr.
func KcareBuild(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	if code := buildcli.Run(ctx, args, &stdout, &stderr); code != 0 {
		return stderr.String(), fmt.Errorf("kcare-build %s: exit %d\n%s", args[0], code, lastLines(stderr.String(), 30))
	}
	return stderr.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
