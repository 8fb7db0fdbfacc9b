package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openvex/go-vex/pkg/vex"

	"github.com/kcare/kcare/internal/bundle"
)

const dpkgStatus = `Package: linux-image-6.1.0-56-amd64
Status: install ok installed
Priority: optional
Section: kernel
Architecture: amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Description: Linux 6.1 for 64-bit PCs (signed)

Package: linux-image-amd64
Status: install ok installed
Architecture: amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)
`

var vexID = regexp.MustCompile(`vex-[0-9a-f]{64}`)

// parseVEX parses kcarectl --vex output with go-vex and checks every
// statement is valid.
func parseVEX(t *testing.T, out string) *vex.VEX {
	t.Helper()
	doc, err := vex.Parse([]byte(out))
	if err != nil {
		t.Fatalf("go-vex cannot parse kcarectl --vex: %v\n%s", err, out)
	}
	for i := range doc.Statements {
		if err := doc.Statements[i].Validate(); err != nil {
			t.Errorf("statement %d: %v", i, err)
		}
	}
	if doc.Context != vex.ContextLocator() || doc.Timestamp == nil || doc.ID == "" {
		t.Errorf("document metadata %+v: want the OpenVEX context, an id and a timestamp", doc.Metadata)
	}
	return doc
}

func TestVEX(t *testing.T) {
	e := newEnv(t)
	os.MkdirAll(filepath.Join(e.root, "var/lib/dpkg"), 0o755)
	os.WriteFile(filepath.Join(e.root, "var/lib/dpkg/status"), []byte(dpkgStatus), 0o644)
	os.WriteFile(filepath.Join(e.root, "etc/os-release"), []byte("ID=debian\nVERSION_ID=\"12\"\n"), 0o644)

	stdout, stderr, code := e.run("--vex")
	if code != ExitOK {
		t.Fatalf("--vex with nothing applied: exit %d: %s", code, stderr)
	}
	if doc := parseVEX(t, stdout); len(doc.Statements) != 0 {
		t.Errorf("--vex with nothing applied: %d statements, want none", len(doc.Statements))
	}
	golden(t, "vex_none", "stdout:\n"+vexID.ReplaceAllString(stdout, "vex-HASH")+"stderr:\n"+stderr)

	for _, l := range []string{"l1.kcp", "l2.kcp"} {
		if _, stderr, code := e.run("--apply", filepath.Join(e.dir, l)); code != ExitOK {
			t.Fatalf("apply %s: exit %d: %s", l, code, stderr)
		}
	}
	stdout, stderr, code = e.run("--vex")
	if code != ExitOK {
		t.Fatalf("--vex at level 2: exit %d: %s", code, stderr)
	}
	golden(t, "vex_l2", "stdout:\n"+vexID.ReplaceAllString(stdout, "vex-HASH")+"stderr:\n"+stderr)

	// The statements name exactly the CVEs of the applied level, fixed,
	// for the running kernel's package.
	doc := parseVEX(t, stdout)
	data, err := os.ReadFile(filepath.Join(e.dir, "l2.kcp"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, c := range b.Manifest.CVEs {
		want = append(want, c.ID)
	}
	const purl = "pkg:deb/debian/linux-image-6.1.0-56-amd64@6.1.192-2?arch=amd64"
	for _, s := range doc.Statements {
		got = append(got, string(s.Vulnerability.Name))
		if s.Status != vex.StatusFixed {
			t.Errorf("%s: status %q, want fixed", s.Vulnerability.Name, s.Status)
		}
		if len(s.Products) != 1 || s.Products[0].ID != purl || s.Products[0].Identifiers[vex.PURL] != purl {
			t.Errorf("%s: products %+v, want %s", s.Vulnerability.Name, s.Products, purl)
		}
		if s.Timestamp == nil || !strings.Contains(s.StatusNotes, "level 2") {
			t.Errorf("%s: timestamp %v, notes %q; want the time applied and the level", s.Vulnerability.Name, s.Timestamp, s.StatusNotes)
		}
		if st := doc.EffectiveStatement(purl, string(s.Vulnerability.Name)); st == nil || st.Status != vex.StatusFixed {
			t.Errorf("go-vex finds no fixed statement for %s on %s", s.Vulnerability.Name, purl)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CVEs in the VEX document differ from the applied level's (-want +got):\n%s", diff)
	}

	// With no package database, the kernel is named by its release alone.
	os.Remove(filepath.Join(e.root, "var/lib/dpkg/status"))
	stdout, stderr, code = e.run("--vex")
	if code != ExitOK || !strings.Contains(stderr, "no package database knows kernel 6.1.0-56-amd64") {
		t.Fatalf("--vex without dpkg: exit %d, stderr %q", code, stderr)
	}
	for _, s := range parseVEX(t, stdout).Statements {
		if s.Products[0].ID != "pkg:generic/linux@6.1.0-56-amd64" {
			t.Errorf("without dpkg: product %q, want pkg:generic/linux@6.1.0-56-amd64", s.Products[0].ID)
		}
	}
}
