package debian

import (
	"reflect"
	"testing"
)

func TestFamilyOf(t *testing.T) {
	for _, tt := range []struct{ release, family string }{
		{"6.1.0-47-amd64", "bookworm-6.1"},
		{"6.1.0-57-amd64", "bookworm-6.1"},
		{"6.12.117+deb12-amd64", "bookworm-6.12"},
		{"6.12.95+deb12-amd64", "bookworm-6.12"},
		{"6.12.118+deb13-amd64", "trixie-6.12"},
		{"6.12.115+deb13.1-amd64", "trixie-6.12"},
		{"6.1.0-47-cloud-amd64", ""},
		{"6.12.118+deb13-rt-amd64", ""},
		{"5.15.0-76-generic", ""},
	} {
		f, ok := FamilyOf(tt.release)
		if f.Name != tt.family || ok != (tt.family != "") {
			t.Errorf("FamilyOf(%q) = %q, %v; want %q", tt.release, f.Name, ok, tt.family)
		}
	}
}

func TestImageReleases(t *testing.T) {
	got := imageReleases([]string{
		"linux-image-6.1.0-47-amd64-unsigned", "linux-image-6.1.0-47-cloud-amd64-unsigned",
		"linux-image-6.1.0-47-amd64", "linux-image-amd64", "linux-image-6.12.118+deb13-amd64-unsigned",
		"linux-image-6.12.118+deb13-rt-amd64-unsigned", "linux-image-6.1.0-47-amd64-unsigned",
	})
	want := []string{"6.1.0-47-amd64", "6.12.118+deb13-amd64"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("imageReleases = %q; want %q", got, want)
	}
}

// set builds the packages of a complete set as apt-cache show gives them.
func set(pkgs map[string]Package, release, version, kbuild, kbuildVersion string) {
	abi := release[:len(release)-len("-amd64")]
	pkgs["linux-image-"+release+"-unsigned"] = Package{Name: "linux-image-" + release + "-unsigned", Version: version}
	pkgs["linux-headers-"+release] = Package{Name: "linux-headers-" + release, Version: version,
		Depends: []string{"linux-headers-" + abi + "-common", kbuild, "linux-compiler-gcc-12-x86"}}
	pkgs["linux-headers-"+abi+"-common"] = Package{Name: "linux-headers-" + abi + "-common", Version: version}
	pkgs[kbuild] = Package{Name: kbuild, Version: kbuildVersion}
}

func TestBuildCatalog(t *testing.T) {
	pkgs := map[string]Package{}
	set(pkgs, "6.1.0-57-amd64", "6.1.192-3", "linux-kbuild-6.1", "6.1.192-3")
	set(pkgs, "6.1.0-47-amd64", "6.1.170-3", "linux-kbuild-6.1", "6.1.192-3")
	set(pkgs, "6.1.0-50-amd64", "6.1.176-1", "linux-kbuild-6.1", "6.1.192-3")
	set(pkgs, "6.12.118+deb13-amd64", "6.12.118-1", "linux-kbuild-6.12.118+deb13", "6.12.118-1")
	set(pkgs, "6.12.115+deb13.1-amd64", "6.12.115-2", "linux-kbuild-6.12.115+deb13.1", "6.12.115-2")
	set(pkgs, "6.12.95+deb12-amd64", "6.12.95-1~bpo12+1", "linux-kbuild-6.12.95+deb12", "6.12.95-1~bpo12+1")
	set(pkgs, "6.12.117+deb12-amd64", "6.12.117-1~deb12u1", "linux-kbuild-6.12.117+deb12", "6.12.117-1~deb12u1")
	// 6.1.0-48: the common headers are gone; 6.1.0-49: the headers'
	// kbuild is not served; 6.1.0-46: the headers have another version.
	set(pkgs, "6.1.0-48-amd64", "6.1.172-1", "linux-kbuild-6.1", "6.1.192-3")
	delete(pkgs, "linux-headers-6.1.0-48-common")
	set(pkgs, "6.1.0-49-amd64", "6.1.174-1", "linux-kbuild-6.1.174", "")
	delete(pkgs, "linux-kbuild-6.1.174")
	set(pkgs, "6.1.0-46-amd64", "6.1.169-1", "linux-kbuild-6.1", "6.1.192-3")
	h := pkgs["linux-headers-6.1.0-46-amd64"]
	h.Version = "6.1.169-2"
	pkgs["linux-headers-6.1.0-46-amd64"] = h

	c := buildCatalog([]string{"6.1.0-57-amd64", "6.12.118+deb13-amd64", "6.1.0-47-amd64", "6.12.95+deb12-amd64",
		"6.1.0-50-amd64", "6.12.115+deb13.1-amd64", "6.12.117+deb12-amd64", "6.1.0-48-amd64", "6.1.0-49-amd64",
		"6.1.0-46-amd64", "6.1.0-45-amd64"}, pkgs)
	var got []string
	for _, s := range c.Sets {
		got = append(got, s.Family+" "+s.Release+" "+s.Version+" "+s.Kbuild.Name)
	}
	want := []string{
		"bookworm-6.1 6.1.0-47-amd64 6.1.170-3 linux-kbuild-6.1",
		"bookworm-6.1 6.1.0-50-amd64 6.1.176-1 linux-kbuild-6.1",
		"bookworm-6.1 6.1.0-57-amd64 6.1.192-3 linux-kbuild-6.1",
		"bookworm-6.12 6.12.95+deb12-amd64 6.12.95-1~bpo12+1 linux-kbuild-6.12.95+deb12",
		"bookworm-6.12 6.12.117+deb12-amd64 6.12.117-1~deb12u1 linux-kbuild-6.12.117+deb12",
		"trixie-6.12 6.12.115+deb13.1-amd64 6.12.115-2 linux-kbuild-6.12.115+deb13.1",
		"trixie-6.12 6.12.118+deb13-amd64 6.12.118-1 linux-kbuild-6.12.118+deb13",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sets:\n%q\nwant\n%q", got, want)
	}
	wantIncomplete := []Incomplete{
		{"6.1.0-45-amd64", "", []string{"linux-image-6.1.0-45-amd64-unsigned", "linux-headers-6.1.0-45-amd64 ()", "linux-headers-6.1.0-45-common ()"}},
		{"6.1.0-46-amd64", "6.1.169-1", []string{"linux-headers-6.1.0-46-amd64 (6.1.169-1)"}},
		{"6.1.0-48-amd64", "6.1.172-1", []string{"linux-headers-6.1.0-48-common (6.1.172-1)"}},
		{"6.1.0-49-amd64", "6.1.174-1", []string{"linux-kbuild-6.1.174"}},
	}
	if !reflect.DeepEqual(c.Incomplete, wantIncomplete) {
		t.Errorf("incomplete:\n%q\nwant\n%q", c.Incomplete, wantIncomplete)
	}
	if s, _ := c.Oldest("bookworm-6.1"); s.Release != "6.1.0-47-amd64" {
		t.Errorf("oldest bookworm-6.1 = %s", s.Release)
	}
	if s, _ := c.Newest("bookworm-6.1"); s.Release != "6.1.0-57-amd64" {
		t.Errorf("newest bookworm-6.1 = %s", s.Release)
	}
	if s, _ := c.Newest("trixie-6.12"); s.Release != "6.12.118+deb13-amd64" {
		t.Errorf("newest trixie-6.12 = %s", s.Release)
	}
	if s, _ := c.Newest("bookworm-6.12"); s.Release != "6.12.117+deb12-amd64" {
		t.Errorf("newest bookworm-6.12 = %s", s.Release)
	}
	if _, ok := c.Newest("sid-6.17"); ok {
		t.Error("a family the catalog lacks has a newest set")
	}
}

func TestParseShow(t *testing.T) {
	out := `Package: linux-image-6.1.0-56-amd64-unsigned
Source: linux
Version: 6.1.192-2
Installed-Size: 406613
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Description: Linux 6.1 for 64-bit PCs
 The Linux kernel 6.1 and modules for use on PCs with AMD64, Intel 64 or
 VIA Nano processors.
Description-md5: 0aa9928538ff7ff0f28e8072ac8b130d

Package: linux-headers-6.1.0-56-amd64
Source: linux
Version: 6.1.192-2
Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86
Description: Header files for Linux 6.1.0-56-amd64

Package: linux-headers-6.1.0-56-amd64
Version: 6.1.190-1
`
	got := parseShow([]byte(out))
	want := map[string]Package{
		"linux-image-6.1.0-56-amd64-unsigned": {"linux-image-6.1.0-56-amd64-unsigned", "6.1.192-2", []string{"kmod", "linux-base", "initramfs-tools"}},
		"linux-headers-6.1.0-56-amd64":        {"linux-headers-6.1.0-56-amd64", "6.1.192-2", []string{"linux-headers-6.1.0-56-common", "linux-kbuild-6.1", "linux-compiler-gcc-12-x86"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseShow = %+v; want %+v", got, want)
	}
}

func TestDebFileName(t *testing.T) {
	if got, want := debFileName("linux-kbuild-6.1", "6.1.192-2", "amd64"), "linux-kbuild-6.1_6.1.192-2_amd64.deb"; got != want {
		t.Errorf("debFileName = %q; want %q", got, want)
	}
	if got, want := debFileName("foo", "1:2.3-4", "all"), "foo_1%3a2.3-4_all.deb"; got != want {
		t.Errorf("debFileName = %q; want %q", got, want)
	}
}
