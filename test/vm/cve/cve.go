// Package cve lists the real kernel fixes kept under testdata/cve and
// builds their reproducers for a guest.
//
// Each fix lives in testdata/cve/<CVE-ID>/: cve.json (the manifest's CVE
// entry: id, description, URL), debian.json (the kernel family, the
// Debian version that fixed it and the upstream commit's subject),
// fix.patch (the Debian/upstream fix), livepatch/ (the livepatch replacing
// the functions the fix changes), analysis.json (what kcare-build analyze
// says the livepatch must replace) and repro.c, a static C program that
// prints exactly "vulnerable" (exit 1) or "fixed" (exit 0), or exits 2
// with the reason on stderr when it cannot test.
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
	"strings"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/debian"
)

// Exit codes of a reproducer.
const (
	ExitFixed      = 0
	ExitVulnerable = 1
	ExitCannotTest = 2
)

// Fix is one CVE fix under testdata/cve.
type Fix struct {
	CVE    bundle.CVE // the manifest entry, from cve.json
	Debian Debian     // from debian.json
	Dir    string     // testdata/cve/<CVE-ID>
}

// Debian says where Debian fixed the bug.
type Debian struct {
	Family          string `json:"family"`           // the kernel family, "bookworm-6.1"
	FixedIn         string `json:"fixed_in"`         // the first fixed package version, "6.1.192-1"
	UpstreamSubject string `json:"upstream_subject"` // the upstream commit's subject, as the changelog cites it
}

// ModuleName is the livepatch module built for the fix alone:
// kcare_cve_2026_93146.
func (f Fix) ModuleName() string {
	return "kcare_" + strings.ToLower(strings.ReplaceAll(f.CVE.ID, "-", "_"))
}

// Analysis returns the path of the fix's analysis (kcare-build analyze --out).
func (f Fix) Analysis() string { return filepath.Join(f.Dir, "analysis.json") }

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
		var deb Debian
		data, err = os.ReadFile(filepath.Join(d, "debian.json"))
		if err != nil {
			return nil, fmt.Errorf("load fix %s: %w", d, err)
		}
		dec = json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&deb); err != nil {
			return nil, fmt.Errorf("load fix %s/debian.json: %w", d, err)
		}
		if _, ok := debian.FamilyNamed(deb.Family); !ok || deb.FixedIn == "" || deb.UpstreamSubject == "" {
			return nil, fmt.Errorf("load fix %s/debian.json: want a kernel family, fixed_in and upstream_subject", d)
		}
		fixes = append(fixes, Fix{CVE: c, Debian: deb, Dir: d})
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

func jsonIndent(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
