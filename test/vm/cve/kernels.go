package cve

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kcare/kcare/internal/debian"
)

// ErrNoVulnerableKernel means the archive no longer serves, complete, a
// kernel that carries every bug of the fixes: the team picks new fixes
// or another target.
var ErrNoVulnerableKernel = errors.New("the archive serves no complete kernel vulnerable to every fix")

// ErrNoFixedKernel means the archive serves no kernel that carries every
// fix.
var ErrNoFixedKernel = errors.New("the archive serves no complete kernel with every fix")

// family returns the one family of the fixes.
func family(fixes []Fix) (string, error) {
	if len(fixes) == 0 {
		return "", errors.New("no fixes")
	}
	fam := fixes[0].Debian.Family
	for _, f := range fixes[1:] {
		if f.Debian.Family != fam {
			return "", fmt.Errorf("%s is for %s, %s for %s: one family at a time", fixes[0].CVE.ID, fam, f.CVE.ID, f.Debian.Family)
		}
	}
	return fam, nil
}

// VulnerableKernel returns the kernel the fixes are proved on: the oldest
// complete set of their family the archive serves, which must be older
// than every fix. If it is not, the error names what is missing: the fix
// it already carries, and the older kernels the archive serves only in
// part.
func VulnerableKernel(c *debian.Catalog, fixes []Fix) (debian.Set, error) {
	fam, err := family(fixes)
	if err != nil {
		return debian.Set{}, err
	}
	oldest, ok := c.Oldest(fam)
	first := fixes[0]
	for _, f := range fixes[1:] {
		if debian.CompareVersions(f.Debian.FixedIn, first.Debian.FixedIn) < 0 {
			first = f
		}
	}
	if ok && debian.CompareVersions(oldest.Version, first.Debian.FixedIn) < 0 {
		return oldest, nil
	}
	var why []string
	if ok {
		why = append(why, fmt.Sprintf("the oldest complete %s kernel served is %s (%s), which carries the fix of %s (%s)",
			fam, oldest.Release, oldest.Version, first.CVE.ID, first.Debian.FixedIn))
	} else {
		why = append(why, fmt.Sprintf("no complete %s kernel is served", fam))
	}
	for _, in := range c.Incomplete {
		if f, _ := debian.FamilyOf(in.Release); f.Name == fam && in.Version != "" && debian.CompareVersions(in.Version, first.Debian.FixedIn) < 0 {
			why = append(why, fmt.Sprintf("%s (%s) is served without %s", in.Release, in.Version, strings.Join(in.Missing, ", ")))
		}
	}
	return debian.Set{}, fmt.Errorf("%w: need a %s kernel older than %s: %s; pick new fixes or another target",
		ErrNoVulnerableKernel, fam, first.Debian.FixedIn, strings.Join(why, "; "))
}

// FixedKernel returns the newest complete set of the fixes' family, which
// must carry every fix.
func FixedKernel(c *debian.Catalog, fixes []Fix) (debian.Set, error) {
	fam, err := family(fixes)
	if err != nil {
		return debian.Set{}, err
	}
	newest, ok := c.Newest(fam)
	if !ok {
		return debian.Set{}, fmt.Errorf("%w: no complete %s kernel is served", ErrNoFixedKernel, fam)
	}
	for _, f := range fixes {
		if debian.CompareVersions(newest.Version, f.Debian.FixedIn) < 0 {
			return debian.Set{}, fmt.Errorf("%w: the newest %s kernel, %s (%s), predates the fix of %s (%s)",
				ErrNoFixedKernel, fam, newest.Release, newest.Version, f.CVE.ID, f.Debian.FixedIn)
		}
	}
	return newest, nil
}
