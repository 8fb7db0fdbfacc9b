package kernel

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/package-url/packageurl-go"
)

// The distribution package a kernel was installed from: dpkg's or rpm's
// record of it, for the package URL a scanner or a VEX document names.

// Package is the installed package of a kernel.
type Package struct {
	Type      string // "deb", "rpm", or "" when no package system knows the kernel
	Namespace string // distribution: "debian", "ubuntu", "rhel", ...
	Name      string // "linux-image-6.1.0-56-amd64", "kernel-core"
	Version   string // "6.1.192-2"; for rpm VERSION-RELEASE
	Epoch     string // rpm only; "" for none
	Arch      string // "amd64", "x86_64"
	Release   string // the kernel's release, always set
}

// PURL returns the package URL naming p: pkg:deb/debian/NAME@VERSION?arch=ARCH,
// pkg:rpm/NAMESPACE/NAME@VERSION?arch=ARCH[&epoch=E]. A kernel that no
// package system knows gets pkg:generic/linux@RELEASE: the release is all
// that is known of it.
func (p Package) PURL() string {
	var q packageurl.Qualifiers
	if p.Arch != "" {
		q = append(q, packageurl.Qualifier{Key: "arch", Value: p.Arch})
	}
	if p.Epoch != "" && p.Epoch != "0" {
		q = append(q, packageurl.Qualifier{Key: "epoch", Value: p.Epoch})
	}
	switch p.Type {
	case "deb", "rpm":
		return packageurl.NewPackageURL(p.Type, p.Namespace, p.Name, p.Version, q, "").ToString()
	}
	return packageurl.NewPackageURL("generic", "", "linux", p.Release, nil, "").ToString()
}

// InstalledPackage finds the installed package of the kernel with the
// given release in the system under root: in dpkg's database
// (linux-image-RELEASE, else its -unsigned build), else in rpm's (the
// package owning /lib/modules/RELEASE/vmlinuz or /boot/vmlinuz-RELEASE).
// When neither knows it, Type is "".
func InstalledPackage(root, release string) Package {
	p := Package{Release: release}
	ns := osID(root)
	if b, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status")); err == nil {
		pkgs := ParseDpkgStatus(b)
		for _, name := range []string{"linux-image-" + release, "linux-image-" + release + "-unsigned"} {
			if d, ok := pkgs[name]; ok && d.Version != "" && strings.HasSuffix(d.Status, " installed") {
				if ns == "" {
					ns = "debian"
				}
				p.Type, p.Namespace, p.Name, p.Version, p.Arch = "deb", ns, name, d.Version, d.Arch
				return p
			}
		}
	}
	if r, ok := rpmKernel(root, release); ok {
		r.Namespace = ns
		if r.Namespace == "" {
			r.Namespace = "redhat"
		}
		return r
	}
	return p
}

// osID reads ID from /etc/os-release (or /usr/lib/os-release) under root.
func osID(root string) string {
	for _, f := range []string{"etc/os-release", "usr/lib/os-release"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "ID="); ok {
				return strings.ToLower(strings.Trim(strings.TrimSpace(v), `"'`))
			}
		}
		return ""
	}
	return ""
}

// rpmKernel asks rpm which package owns the kernel image of release
// under root.
func rpmKernel(root, release string) (Package, bool) {
	dbpath := ""
	for _, d := range []string{"/usr/lib/sysimage/rpm", "/var/lib/rpm"} {
		if st, err := os.Stat(filepath.Join(root, d)); err == nil && st.IsDir() {
			dbpath = d
			break
		}
	}
	if dbpath == "" {
		return Package{}, false
	}
	rpm, err := exec.LookPath("rpm")
	if err != nil {
		return Package{}, false
	}
	out, err := exec.Command(rpm, "--root", root, "--dbpath", dbpath, "-qf", "--qf", `%{NAME}\t%{EPOCHNUM}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n`,
		"/lib/modules/"+release+"/vmlinuz", "/boot/vmlinuz-"+release).Output()
	if len(out) == 0 {
		return Package{}, false
	}
	_ = err // one of the two paths may be unowned; the other answers
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 4 || f[0] == "" {
			continue
		}
		return Package{Type: "rpm", Name: f[0], Epoch: f[1], Version: f[2], Arch: f[3], Release: release}, true
	}
	return Package{}, false
}

// DpkgPackage is what dpkg's status file says of one package.
type DpkgPackage struct {
	Version, Arch, Status, Source string
}

// ParseDpkgStatus parses dpkg's status file: stanzas of "Field: value"
// lines separated by blank lines, continuation lines starting with a space.
func ParseDpkgStatus(b []byte) map[string]DpkgPackage {
	out := map[string]DpkgPackage{}
	for _, stanza := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n") {
		var name string
		var p DpkgPackage
		for _, line := range strings.Split(stanza, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(line, " ") {
				continue
			}
			v = strings.TrimSpace(v)
			switch k {
			case "Package":
				name = v
			case "Version":
				p.Version = v
			case "Architecture":
				p.Arch = v
			case "Status":
				p.Status = v
			case "Source":
				p.Source = v
			}
		}
		if name != "" {
			out[name] = p
		}
	}
	return out
}
