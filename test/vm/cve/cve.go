// Package cve lists the real kernel fixes kept under testdata/cve and
// builds their reproducers for a guest.
//
// Each fix lives in testdata/cve/<CVE-ID>/: cve.json (the manifest's CVE
// entry: id, description, URL), fix.patch (the Debian/upstream fix),
// livepatch.c (the livepatch replacing the functions the fix changes) and
// repro.c, a static C program that prints exactly "vulnerable" (exit 1) or
// "fixed" (exit 0), or exits 2 with the reason on stderr when it cannot
// test.
package cve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/kcare/kcare/internal/bundle"
)

// Exit codes of a reproducer.
const (
	ExitFixed      = 0
	ExitVulnerable = 1
	ExitCannotTest = 2
)

// Fix is one CVE fix under testdata/cve.
type Fix struct {
	CVE bundle.CVE // the manifest entry, from cve.json
	Dir string     // testdata/cve/<CVE-ID>
}

// Patch returns the path of the fix's upstream/Debian patch.
func (f Fix) Patch() string { return filepath.Join(f.Dir, "fix.patch") }

// Livepatch returns the directory holding the livepatch source.
func (f Fix) Livepatch() string { return filepath.Join(f.Dir, "livepatch") }

// Reproducer returns the path of the reproducer's C source.
func (f Fix) Reproducer() string { return filepath.Join(f.Dir, "repro.c") }

// Load reads every fix under dir (testdata/cve), sorted by CVE id.
func Load(dir string) ([]Fix, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "CVE-*", "cve.json"))
	if err != nil {
		return nil, err
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("load fixes: no CVE-*/cve.json under %s", dir)
	}
	sort.Strings(matches)
	var fixes []Fix
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		var c bundle.CVE
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("load fix %s: %w", m, err)
		}
		d := filepath.Dir(m)
		if c.ID != filepath.Base(d) || c.Description == "" || c.URL == "" {
			return nil, fmt.Errorf("load fix %s: want id %s, a description and a URL", m, filepath.Base(d))
		}
		fixes = append(fixes, Fix{CVE: c, Dir: d})
	}
	return fixes, nil
}

// BuildReproducer compiles the fix's reproducer into a static binary at out.
func BuildReproducer(ctx context.Context, f Fix, out string) error {
	cmd := exec.CommandContext(ctx, "gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, f.Reproducer())
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build reproducer of %s: %w\n%s", f.CVE.ID, err, msg)
	}
	return nil
}
