package cve

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/kcare/kcare/internal/debian"
)

func bookworm(release, version string) debian.Set {
	return debian.Set{Family: "bookworm-6.1", Release: release, ABI: release[:len(release)-len("-amd64")], Version: version}
}

// TestKernels: the vulnerable and the fixed kernel are resolved from what
// the archive serves, and when it no longer serves a vulnerable one the
// error says what is missing, so the team picks a new target.
func TestKernels(t *testing.T) {
	fixes, err := Load(filepath.Join("..", "..", "..", "testdata", "cve"))
	if err != nil {
		t.Fatal(err)
	}
	s47, s50, s57 := bookworm("6.1.0-47-amd64", "6.1.170-3"), bookworm("6.1.0-50-amd64", "6.1.176-1"), bookworm("6.1.0-57-amd64", "6.1.192-3")
	s54 := bookworm("6.1.0-54-amd64", "6.1.190-1")
	trixie := debian.Set{Family: "trixie-6.12", Release: "6.12.118+deb13-amd64", Version: "6.12.118-1"}
	tests := []struct {
		name              string
		catalog           debian.Catalog
		vulnerable, fixed string
		vulnerableErr     string
		fixedErr          error
	}{
		{"today", debian.Catalog{Sets: []debian.Set{s47, s50, s57, trixie}}, "6.1.0-47-amd64", "6.1.0-57-amd64", "", nil},
		{"47_gone", debian.Catalog{Sets: []debian.Set{s50, s57}}, "", "6.1.0-57-amd64",
			"the archive serves no complete kernel vulnerable to every fix: need a bookworm-6.1 kernel older than 6.1.176-1: " +
				"the oldest complete bookworm-6.1 kernel served is 6.1.0-50-amd64 (6.1.176-1), which carries the fix of CVE-2026-53287 (6.1.176-1); pick new fixes or another target", nil},
		{"47_incomplete", debian.Catalog{Sets: []debian.Set{s54, s57}, Incomplete: []debian.Incomplete{
			{Release: "6.1.0-47-amd64", Version: "6.1.170-3", Missing: []string{"linux-headers-6.1.0-47-common (6.1.170-3)"}},
			{Release: "6.1.0-55-amd64", Version: "6.1.192-1", Missing: []string{"linux-kbuild-6.1"}},
		}}, "", "6.1.0-57-amd64",
			"the archive serves no complete kernel vulnerable to every fix: need a bookworm-6.1 kernel older than 6.1.176-1: " +
				"the oldest complete bookworm-6.1 kernel served is 6.1.0-54-amd64 (6.1.190-1), which carries the fix of CVE-2026-53287 (6.1.176-1); " +
				"6.1.0-47-amd64 (6.1.170-3) is served without linux-headers-6.1.0-47-common (6.1.170-3); pick new fixes or another target", nil},
		{"no_bookworm", debian.Catalog{Sets: []debian.Set{trixie}}, "", "",
			"the archive serves no complete kernel vulnerable to every fix: need a bookworm-6.1 kernel older than 6.1.176-1: no complete bookworm-6.1 kernel is served; pick new fixes or another target",
			ErrNoFixedKernel},
		{"newest_predates_a_fix", debian.Catalog{Sets: []debian.Set{s47, s54}}, "6.1.0-47-amd64", "", "", ErrNoFixedKernel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := VulnerableKernel(&tt.catalog, fixes)
			switch {
			case tt.vulnerableErr != "":
				if !errors.Is(err, ErrNoVulnerableKernel) || err.Error() != tt.vulnerableErr {
					t.Errorf("VulnerableKernel: %v\nwant: %s", err, tt.vulnerableErr)
				}
			case err != nil || v.Release != tt.vulnerable:
				t.Errorf("VulnerableKernel = %s, %v; want %s", v.Release, err, tt.vulnerable)
			}
			f, err := FixedKernel(&tt.catalog, fixes)
			switch {
			case tt.fixedErr != nil:
				if !errors.Is(err, tt.fixedErr) {
					t.Errorf("FixedKernel: %v; want %v", err, tt.fixedErr)
				}
			case err != nil || f.Release != tt.fixed:
				t.Errorf("FixedKernel = %s, %v; want %s", f.Release, err, tt.fixed)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	fixes, err := Load(filepath.Join("..", "..", "..", "testdata", "cve"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fixes {
		got = append(got, f.CVE.ID+" "+f.Debian.FixedIn+" "+f.ModuleName())
	}
	want := []string{
		"CVE-2026-53287 6.1.176-1 kcare_cve_2026_53287",
		"CVE-2026-72379 6.1.192-1 kcare_cve_2026_72379",
		"CVE-2026-93146 6.1.192-1 kcare_cve_2026_93146",
	}
	if len(got) != len(want) {
		t.Fatalf("Load = %q; want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("fix %d = %q; want %q", i, got[i], want[i])
		}
	}
}
