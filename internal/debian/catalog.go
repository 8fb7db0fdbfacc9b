package debian

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Family is a line of Debian kernels built alike: one Debian release,
// one upstream series, one compiler.
type Family struct {
	Name     string // "trixie-6.12"
	Codename string // the Debian release whose compiler builds it: "trixie"
	release  *regexp.Regexp
}

// Families are the kernel families kcare knows, in the order they are
// listed.
var Families = []Family{
	{"bookworm-6.1", "bookworm", regexp.MustCompile(`^6\.1\.0-[0-9]+-amd64$`)},
	{"bookworm-6.12", "bookworm", regexp.MustCompile(`^6\.12\.[0-9]+\+deb12-amd64$`)},
	{"trixie-6.12", "trixie", regexp.MustCompile(`^6\.12\.[0-9]+\+deb13(\.[0-9]+)?-amd64$`)},
}

// FamilyOf returns the family of a kernel release ("6.12.118+deb13-amd64").
func FamilyOf(release string) (Family, bool) {
	for _, f := range Families {
		if f.release.MatchString(release) {
			return f, true
		}
	}
	return Family{}, false
}

// FamilyNamed returns the family called name ("bookworm-6.1").
func FamilyNamed(name string) (Family, bool) {
	for _, f := range Families {
		if f.Name == name {
			return f, true
		}
	}
	return Family{}, false
}

// FamilyNames lists the families' names.
func FamilyNames() []string {
	var out []string
	for _, f := range Families {
		out = append(out, f.Name)
	}
	return out
}

// Set is the complete set of packages of one kernel ABI: what a livepatch
// is built against and a test guest boots.
type Set struct {
	Family  string
	Release string // "6.1.0-47-amd64", what uname -r prints
	ABI     string // "6.1.0-47"
	Version string // the Debian package version, "6.1.170-3"
	// The packages: linux-image-RELEASE-unsigned, linux-headers-RELEASE,
	// linux-headers-ABI-common and the linux-kbuild package the headers
	// depend on.
	Image, Headers, Common, Kbuild Package
}

// Incomplete is a kernel ABI the archive serves only in part.
type Incomplete struct {
	Release string
	Version string   // the image's version
	Missing []string // "linux-headers-6.1.0-48-common (6.1.172-1)"
}

// Catalog is what the archive serves of every family.
type Catalog struct {
	// Sets are the complete sets, by family in Families' order, oldest
	// version first within a family.
	Sets       []Set
	Incomplete []Incomplete
}

// Family returns the complete sets of one family, oldest first.
func (c *Catalog) Family(name string) []Set {
	var out []Set
	for _, s := range c.Sets {
		if s.Family == name {
			out = append(out, s)
		}
	}
	return out
}

// Release returns the complete set of a release.
func (c *Catalog) Release(release string) (Set, bool) {
	for _, s := range c.Sets {
		if s.Release == release {
			return s, true
		}
	}
	return Set{}, false
}

// Newest returns the newest complete set of a family: its current kernel.
func (c *Catalog) Newest(family string) (Set, bool) {
	sets := c.Family(family)
	if len(sets) == 0 {
		return Set{}, false
	}
	return sets[len(sets)-1], true
}

// Oldest returns the oldest complete set of a family the archive serves.
func (c *Catalog) Oldest(family string) (Set, bool) {
	sets := c.Family(family)
	if len(sets) == 0 {
		return Set{}, false
	}
	return sets[0], true
}

var imagePackage = regexp.MustCompile(`^linux-image-(.+)-unsigned$`)

// Catalog asks the archive which kernels of each family it serves.
func (a *Archive) Catalog(ctx context.Context) (*Catalog, error) {
	names, err := a.pkgNames(ctx, "linux-image-")
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	releases := imageReleases(names)
	var pkgs []string
	for _, r := range releases {
		abi := strings.TrimSuffix(r, "-amd64")
		pkgs = append(pkgs, "linux-image-"+r+"-unsigned", "linux-headers-"+r, "linux-headers-"+abi+"-common")
	}
	shown, err := a.Show(ctx, pkgs...)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	var kbuilds []string
	for _, p := range shown {
		for _, d := range p.Depends {
			if strings.HasPrefix(d, "linux-kbuild-") && !slices.Contains(kbuilds, d) {
				kbuilds = append(kbuilds, d)
			}
		}
	}
	if len(kbuilds) > 0 {
		kb, err := a.Show(ctx, kbuilds...)
		if err != nil {
			return nil, fmt.Errorf("list kernels: %w", err)
		}
		for n, p := range kb {
			shown[n] = p
		}
	}
	return buildCatalog(releases, shown), nil
}

// imageReleases returns the releases of the unsigned image packages in
// names that belong to a family.
func imageReleases(names []string) []string {
	var out []string
	for _, n := range names {
		m := imagePackage.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		if _, ok := FamilyOf(m[1]); ok && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// buildCatalog sorts releases into complete sets and incomplete ones,
// given what the archive shows of their packages.
func buildCatalog(releases []string, pkgs map[string]Package) *Catalog {
	c := &Catalog{}
	for _, r := range releases {
		fam, ok := FamilyOf(r)
		if !ok {
			continue
		}
		abi := strings.TrimSuffix(r, "-amd64")
		s := Set{Family: fam.Name, Release: r, ABI: abi}
		s.Image = pkgs["linux-image-"+r+"-unsigned"]
		s.Version = s.Image.Version
		var missing []string
		want := func(name string) Package {
			p, ok := pkgs[name]
			if !ok || p.Version != s.Version {
				missing = append(missing, fmt.Sprintf("%s (%s)", name, s.Version))
			}
			return p
		}
		if s.Image.Name == "" {
			missing = append(missing, "linux-image-"+r+"-unsigned")
		}
		s.Headers = want("linux-headers-" + r)
		s.Common = want("linux-headers-" + abi + "-common")
		kbuild := ""
		for _, d := range s.Headers.Depends {
			if strings.HasPrefix(d, "linux-kbuild-") {
				kbuild = d
			}
		}
		switch {
		case s.Headers.Name == "":
		case kbuild == "":
			missing = append(missing, "a linux-kbuild package in linux-headers-"+r+"'s Depends")
		default:
			if p, ok := pkgs[kbuild]; ok {
				s.Kbuild = p
			} else {
				missing = append(missing, kbuild)
			}
		}
		if len(missing) > 0 {
			c.Incomplete = append(c.Incomplete, Incomplete{Release: r, Version: s.Version, Missing: missing})
			continue
		}
		c.Sets = append(c.Sets, s)
	}
	famIndex := func(name string) int {
		return slices.IndexFunc(Families, func(f Family) bool { return f.Name == name })
	}
	sort.SliceStable(c.Sets, func(i, j int) bool {
		a, b := c.Sets[i], c.Sets[j]
		if a.Family != b.Family {
			return famIndex(a.Family) < famIndex(b.Family)
		}
		if v := CompareVersions(a.Version, b.Version); v != 0 {
			return v < 0
		}
		return a.Release < b.Release
	})
	sort.Slice(c.Incomplete, func(i, j int) bool { return c.Incomplete[i].Release < c.Incomplete[j].Release })
	return c
}
