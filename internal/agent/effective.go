package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/package-url/packageurl-go"

	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/bundle"
)

// The files the agent keeps beside state.json for security scanners and
// the scanner interface (scanner/libkcare_scanner.so): written on every
// successful apply, removed on unload. See docs/compliance.md.
const (
	// EffectiveFile holds the effective identity, one field a line (see
	// Effective.Marshal).
	EffectiveFile = "effective_version"
	// CVEListFile holds the CVEs fixed by the applied level, one a line.
	CVEListFile = "cvelist"
)

// utsLen is the longest field uname(2) holds (65 bytes with the NUL).
const utsLen = 64

// Effective is what the kernel looks like to a security scanner once a
// level is applied: its release, uname -v text and package version are
// those of the distribution kernel that carries the same fixes. The real
// release, build-id and module say which kernel and which patch the
// identity holds for, so that a reader can check it still does.
type Effective struct {
	Release        string // uname -r: the manifest's effective_release, or the kernel's release
	Version        string // uname -v: see EffectiveKernelVersion
	PackageVersion string // the manifest's effective_version; "" if it names none
	KernelRelease  string // the running kernel's own release
	BuildID        string // the running kernel's build-id
	Module         string // the livepatch module whose patch must be enabled
}

// EffectiveOf returns the identity level m gives the kernel whose uname -v
// text is utsVersion.
func EffectiveOf(m *bundle.Manifest, utsVersion string) Effective {
	return Effective{
		Release:        truncate(m.EffectiveReleaseOr(), utsLen),
		Version:        EffectiveKernelVersion(utsVersion, m.EffectiveVersion, m.Released),
		PackageVersion: m.EffectiveVersion,
		KernelRelease:  m.Kernel.Release,
		BuildID:        m.Kernel.BuildID,
		Module:         m.Module.Name,
	}
}

// debianVersion matches the end of a Debian kernel's uname -v text:
// "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)".
var debianVersion = regexp.MustCompile(`^(.* Debian )(\S+)( \()(\d{4}-\d\d-\d\d)(\))$`)

// EffectiveKernelVersion returns the uname -v text of the kernel whose own
// text is uts, once a level released at released with the effective
// package version pkgVersion is applied. A Debian kernel names its package
// version and build date ("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2
// (2026-10-20)"): both are replaced, by pkgVersion and the level's release
// date. Any other text, or no pkgVersion, is kept as it is. The result is
// cut to the 64 bytes uname(2) holds.
func EffectiveKernelVersion(uts, pkgVersion string, released time.Time) string {
	if pkgVersion != "" {
		if m := debianVersion.FindStringSubmatch(uts); m != nil {
			uts = m[1] + pkgVersion + m[3] + released.UTC().Format("2006-01-02") + m[5]
		}
	}
	return truncate(uts, utsLen)
}

// UTSVersion returns the uname -v text inside a /proc/version banner:
// "Linux version REL (USER@HOST) (COMPILER) #1 SMP ...". It is the text
// after the first ") #", or "" when there is none.
func UTSVersion(banner string) string {
	i := strings.Index(banner, ") #")
	if i < 0 {
		return ""
	}
	return strings.TrimRight(banner[i+2:], "\n")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Marshal returns the text of the effective_version file: one field a
// line, in this order, each line ending in a newline:
//
//	effective release      (uname -r)
//	effective version      (uname -v)
//	effective package version, or an empty line
//	the kernel's own release
//	the kernel's build-id
//	the livepatch module
func (e Effective) Marshal() []byte {
	return []byte(strings.Join([]string{e.Release, e.Version, e.PackageVersion, e.KernelRelease, e.BuildID, e.Module}, "\n") + "\n")
}

// ParseEffective parses the effective_version file.
func ParseEffective(b []byte) (Effective, error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 || lines[6] != "" {
		return Effective{}, errors.New("effective version file: want 6 lines")
	}
	e := Effective{Release: lines[0], Version: lines[1], PackageVersion: lines[2], KernelRelease: lines[3], BuildID: lines[4], Module: lines[5]}
	if e.Release == "" || e.KernelRelease == "" || e.BuildID == "" || e.Module == "" {
		return Effective{}, errors.New("effective version file: empty field")
	}
	return e, nil
}

// check refuses text that would not survive being one line of a file or
// a uname field.
func (e Effective) check() error {
	for _, f := range []string{e.Release, e.Version, e.PackageVersion, e.KernelRelease, e.BuildID, e.Module} {
		for i := 0; i < len(f); i++ {
			if f[i] < 0x20 || f[i] == 0x7f {
				return fmt.Errorf("effective version: control character in %q", f)
			}
		}
	}
	return nil
}

// utsVersion reads the running kernel's uname -v text: /proc/sys/kernel/version,
// or the end of the /proc/version banner.
func (a *Agent) utsVersion() (string, error) {
	if b, err := os.ReadFile(filepath.Join(a.root(), "proc/sys/kernel/version")); err == nil {
		return strings.TrimRight(string(b), "\n"), nil
	}
	b, err := os.ReadFile(filepath.Join(a.root(), "proc/version"))
	if err != nil {
		return "", fmt.Errorf("read kernel version: %w", err)
	}
	return UTSVersion(string(b)), nil
}

// effective returns the identity m gives the running kernel.
func (a *Agent) effective(m *bundle.Manifest) Effective {
	uts, err := a.utsVersion()
	if err != nil {
		uts = UTSVersion(m.Kernel.Version)
	}
	return EffectiveOf(m, uts)
}

// writeEffective records the effective identity and CVE list of the
// applied level m, atomically.
func (a *Agent) writeEffective(m *bundle.Manifest) error {
	staged, err := a.stageEffective(m)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range staged {
		if err := p.Commit(); err != nil {
			p.Abort()
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("record effective version: %w", err)
	}
	return nil
}

// clearEffective removes the effective identity and CVE list: nothing is
// applied.
func (a *Agent) clearEffective() error {
	var errs []error
	for _, f := range []string{EffectiveFile, CVEListFile} {
		if err := os.Remove(filepath.Join(a.stateDir(), f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("clear %s: %w", f, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return atomicfile.SyncDir(a.stateDir())
}

// Package is the installed package of the running kernel.
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

// KernelPackage finds the installed package of the kernel with the given
// release: in dpkg's database (linux-image-RELEASE, else its -unsigned
// build), else in rpm's (the package owning /lib/modules/RELEASE/vmlinuz or
// /boot/vmlinuz-RELEASE). When neither knows it, Type is "".
func (a *Agent) KernelPackage(release string) Package {
	p := Package{Release: release}
	ns := a.osID()
	if b, err := os.ReadFile(filepath.Join(a.root(), "var/lib/dpkg/status")); err == nil {
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
	if r, ok := a.rpmKernel(release); ok {
		r.Namespace = ns
		if r.Namespace == "" {
			r.Namespace = "redhat"
		}
		return r
	}
	return p
}

// osID reads ID from /etc/os-release (or /usr/lib/os-release).
func (a *Agent) osID() string {
	for _, f := range []string{"etc/os-release", "usr/lib/os-release"} {
		b, err := os.ReadFile(filepath.Join(a.root(), f))
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

// rpmKernel asks rpm which package owns the kernel image of release.
func (a *Agent) rpmKernel(release string) (Package, bool) {
	dbpath := ""
	for _, d := range []string{"/usr/lib/sysimage/rpm", "/var/lib/rpm"} {
		if st, err := os.Stat(filepath.Join(a.root(), d)); err == nil && st.IsDir() {
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
	out, err := exec.Command(rpm, "--root", a.root(), "--dbpath", dbpath, "-qf", "--qf", `%{NAME}\t%{EPOCHNUM}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n`,
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
