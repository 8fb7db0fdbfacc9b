package kernel_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
)

func TestInstalledPackage(t *testing.T) {
	status := `Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b7

Package: linux-image-6.1.0-55-amd64
Status: install ok installed
Architecture: amd64
Source: linux-signed-amd64 (6.1.180+1)
Version: 6.1.180-1

Package: linux-image-6.1.0-56-amd64
Status: install ok installed
Priority: optional
Section: kernel
Architecture: amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Description: Linux 6.1 for 64-bit PCs (signed)
 The Linux kernel 6.1 and modules for use on PCs with AMD64, Intel 64 or
 VIA Nano processors.
`
	tests := []struct {
		name, status, osRelease, want string
	}{
		{"debian", status, "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n", "pkg:deb/debian/linux-image-6.1.0-56-amd64@6.1.192-2?arch=amd64"},
		{"no_os_release", status, "", "pkg:deb/debian/linux-image-6.1.0-56-amd64@6.1.192-2?arch=amd64"},
		{"unsigned_plus", "Package: linux-image-6.1.0-56-amd64-unsigned\nStatus: install ok installed\nArchitecture: amd64\nVersion: 6.1.192-2+deb12u1\n",
			"ID=debian\n", "pkg:deb/debian/linux-image-6.1.0-56-amd64-unsigned@6.1.192-2%2Bdeb12u1?arch=amd64"},
		{"removed", "Package: linux-image-6.1.0-56-amd64\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 6.1.192-2\n",
			"ID=debian\n", "pkg:generic/linux@6.1.0-56-amd64"},
		{"no_package_system", "", "", "pkg:generic/linux@6.1.0-56-amd64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.status != "" {
				os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
				os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(tt.status), 0o644)
			}
			if tt.osRelease != "" {
				os.MkdirAll(filepath.Join(root, "etc"), 0o755)
				os.WriteFile(filepath.Join(root, "etc/os-release"), []byte(tt.osRelease), 0o644)
			}
			if got := kernel.InstalledPackage(root, fakekernel.Release).PURL(); got != tt.want {
				t.Errorf("purl = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPackagePURL(t *testing.T) {
	tests := []struct {
		p    kernel.Package
		want string
	}{
		{kernel.Package{Type: "rpm", Namespace: "rhel", Name: "kernel-core", Version: "5.14.0-427.13.1.el9_4", Arch: "x86_64", Release: "5.14.0-427.13.1.el9_4.x86_64"},
			"pkg:rpm/rhel/kernel-core@5.14.0-427.13.1.el9_4?arch=x86_64"},
		{kernel.Package{Type: "rpm", Namespace: "almalinux", Name: "kernel", Version: "4.18.0-553.el8_10", Epoch: "1", Arch: "x86_64"},
			"pkg:rpm/almalinux/kernel@4.18.0-553.el8_10?arch=x86_64&epoch=1"},
		{kernel.Package{Release: "5.15.0-76-generic"}, "pkg:generic/linux@5.15.0-76-generic"},
	}
	for _, tt := range tests {
		if got := tt.p.PURL(); got != tt.want {
			t.Errorf("%+v: purl %q, want %q", tt.p, got, tt.want)
		}
	}
}

// TestInstalledPackageRPM asks Debian's real rpm about a test database in a
// fake root holding a Red Hat kernel package built with rpmbuild.
func TestInstalledPackageRPM(t *testing.T) {
	for _, p := range []string{"rpm", "rpmbuild"} {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found (install rpm)", p)
			}
			t.Skipf("%s not found (install rpm)", p)
		}
	}
	const release = "5.14.0-427.13.1.el9_4.x86_64"
	dir := t.TempDir()
	spec := filepath.Join(dir, "kernel.spec")
	os.WriteFile(spec, []byte(`%define debug_package %{nil}
%define __os_install_post %{nil}
Name: kernel-core
Epoch: 1
Version: 5.14.0
Release: 427.13.1.el9_4
Summary: kcare test kernel package
License: GPL-2.0-only
%description
A kernel package for kcare's tests.
%install
mkdir -p %{buildroot}/lib/modules/`+release+`
echo kernel > %{buildroot}/lib/modules/`+release+`/vmlinuz
%files
/lib/modules/`+release+`/vmlinuz
`), 0o644)
	top := filepath.Join(dir, "rpmbuild")
	if out, err := exec.Command("rpmbuild", "-bb", "--quiet", "--target", "x86_64", "--define", "_topdir "+top, spec).CombinedOutput(); err != nil {
		t.Fatalf("rpmbuild: %v\n%s", err, out)
	}
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("NAME=\"Red Hat Enterprise Linux\"\nID=\"rhel\"\n"), 0o644)
	for _, args := range [][]string{
		{"--root", root, "--dbpath", "/var/lib/rpm", "--initdb"},
		{"--root", root, "--dbpath", "/var/lib/rpm", "-i", "--justdb", "--nodeps", "--noscripts",
			filepath.Join(top, "RPMS/x86_64/kernel-core-5.14.0-427.13.1.el9_4.x86_64.rpm")},
	} {
		if out, err := exec.Command("rpm", args...).CombinedOutput(); err != nil {
			t.Fatalf("rpm %v: %v\n%s", args, err, out)
		}
	}
	if got, want := kernel.InstalledPackage(root, release).PURL(), "pkg:rpm/rhel/kernel-core@5.14.0-427.13.1.el9_4?arch=x86_64&epoch=1"; got != want {
		t.Errorf("purl %q, want %q", got, want)
	}
	if got, want := kernel.InstalledPackage(root, "5.14.0-1.el9.x86_64").PURL(), "pkg:generic/linux@5.14.0-1.el9.x86_64"; got != want {
		t.Errorf("kernel rpm does not know: purl %q, want %q", got, want)
	}
}
