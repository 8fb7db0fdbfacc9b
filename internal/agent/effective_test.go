package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/fakekernel"
)

func TestEffectiveKernelVersion(t *testing.T) {
	released := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name, uts, pkg, want string
	}{
		{"debian", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)", "6.1.195-1",
			"#1 SMP PREEMPT_DYNAMIC Debian 6.1.195-1 (2026-11-20)"},
		{"debian_cloud", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)", "6.1.158-1+kcare2",
			"#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1+kcare2 (2026-11-20)"},
		{"no_package_version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)", "",
			"#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)"},
		{"ubuntu_kept", "#76-Ubuntu SMP Mon Jun 5 09:54:44 UTC 2023", "5.15.0-79.86",
			"#76-Ubuntu SMP Mon Jun 5 09:54:44 UTC 2023"},
		{"rhel_kept", "#1 SMP PREEMPT_DYNAMIC Fri May 10 11:56:00 EDT 2024", "5.14.0-427.20.1.el9_4",
			"#1 SMP PREEMPT_DYNAMIC Fri May 10 11:56:00 EDT 2024"},
		{"cut_to_64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)", "6.1.192-2+kcare.with.a.very.long.suffix",
			"#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2+kcare.with.a.very.long.s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EffectiveKernelVersion(tt.uts, tt.pkg, released); got != tt.want {
				t.Errorf("EffectiveKernelVersion(%q, %q) = %q, want %q", tt.uts, tt.pkg, got, tt.want)
			}
		})
	}
}

func TestUTSVersion(t *testing.T) {
	tests := []struct{ banner, want string }{
		{fakekernel.Version, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)"},
		{"Linux version 5.15.0-76-generic (buildd@lcy02-amd64-019) (gcc (Ubuntu 11.3.0-1ubuntu1~22.04.1) 11.3.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #83-Ubuntu SMP Thu Jun 15 19:16:32 UTC 2023\n",
			"#83-Ubuntu SMP Thu Jun 15 19:16:32 UTC 2023"},
		{"garbage", ""},
	}
	for _, tt := range tests {
		if got := UTSVersion(tt.banner); got != tt.want {
			t.Errorf("UTSVersion(%q) = %q, want %q", tt.banner, got, tt.want)
		}
	}
}

func TestEffectiveRoundTrip(t *testing.T) {
	m := manifest(2)
	m.EffectiveVersion = "6.1.195-1"
	e := EffectiveOf(&m, UTSVersion(fakekernel.Version))
	want := "6.1.0-56.10002-amd64\n#1 SMP PREEMPT_DYNAMIC Debian 6.1.195-1 (2026-11-02)\n6.1.195-1\n6.1.0-56-amd64\n" +
		fakekernel.BuildID + "\nkcare_test_l2\n"
	if got := string(e.Marshal()); got != want {
		t.Errorf("Marshal = %q, want %q", got, want)
	}
	back, err := ParseEffective(e.Marshal())
	if err != nil || back != e {
		t.Errorf("ParseEffective(Marshal(e)) = %+v, %v; want %+v", back, err, e)
	}
	for _, bad := range []string{"", "one\n", "a\nb\nc\nd\ne\nf", "a\nb\nc\nd\ne\nf\ng\n", "\nb\nc\nd\ne\nf\n"} {
		if _, err := ParseEffective([]byte(bad)); err == nil {
			t.Errorf("ParseEffective(%q) succeeded, want an error", bad)
		}
	}
}

// TestEffectiveFiles checks the files the scanner interface reads: written
// on apply, replaced by the next level, agreeing with Info (and so with
// kcare-uname), removed on unload.
func TestEffectiveFiles(t *testing.T) {
	root := t.TempDir()
	e := newEnv(t, root, true)
	dir := filepath.Join(root, "var/lib/kcare")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "(" + err.Error() + ")"
		}
		return string(b)
	}
	e.apply(t, 1)
	m := manifest(2)
	m.EffectiveVersion = "6.1.195-1"
	data, sig := pack(t, publisher, m)
	if _, err := e.a.Apply(context.Background(), data, sig); err != nil {
		t.Fatal(err)
	}
	info := e.info(t)
	got, err := ParseEffective([]byte(read(EffectiveFile)))
	if err != nil {
		t.Fatal(err)
	}
	want := Effective{
		Release: "6.1.0-56.10002-amd64", Version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.195-1 (2026-11-02)", PackageVersion: "6.1.195-1",
		KernelRelease: fakekernel.Release, BuildID: fakekernel.BuildID, Module: "kcare_test_l2",
	}
	if got != want {
		t.Errorf("effective_version = %+v, want %+v", got, want)
	}
	if info.EffectiveRelease != got.Release || info.EffectiveKernelVersion != got.Version || info.EffectiveVersion != got.PackageVersion {
		t.Errorf("Info says %q / %q / %q, the file %q / %q / %q", info.EffectiveRelease, info.EffectiveKernelVersion, info.EffectiveVersion,
			got.Release, got.Version, got.PackageVersion)
	}
	if got := read(CVEListFile); got != "CVE-2026-10002\n" {
		t.Errorf("cvelist = %q, want the level's CVEs", got)
	}
	if _, err := e.a.Unload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{EffectiveFile, CVEListFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after unload: %v, want it gone", f, err)
		}
	}
}

func TestKernelPackage(t *testing.T) {
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
			a := &Agent{Root: root}
			if got := a.KernelPackage(fakekernel.Release).PURL(); got != tt.want {
				t.Errorf("purl = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPackagePURL(t *testing.T) {
	tests := []struct {
		p    Package
		want string
	}{
		{Package{Type: "rpm", Namespace: "rhel", Name: "kernel-core", Version: "5.14.0-427.13.1.el9_4", Arch: "x86_64", Release: "5.14.0-427.13.1.el9_4.x86_64"},
			"pkg:rpm/rhel/kernel-core@5.14.0-427.13.1.el9_4?arch=x86_64"},
		{Package{Type: "rpm", Namespace: "almalinux", Name: "kernel", Version: "4.18.0-553.el8_10", Epoch: "1", Arch: "x86_64"},
			"pkg:rpm/almalinux/kernel@4.18.0-553.el8_10?arch=x86_64&epoch=1"},
		{Package{Release: "5.15.0-76-generic"}, "pkg:generic/linux@5.15.0-76-generic"},
	}
	for _, tt := range tests {
		if got := tt.p.PURL(); got != tt.want {
			t.Errorf("%+v: purl %q, want %q", tt.p, got, tt.want)
		}
	}
}

// TestKernelPackageRPM asks Debian's real rpm about a test database in a
// fake root holding a Red Hat kernel package built with rpmbuild.
func TestKernelPackageRPM(t *testing.T) {
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
	a := &Agent{Root: root}
	if got, want := a.KernelPackage(release).PURL(), "pkg:rpm/rhel/kernel-core@5.14.0-427.13.1.el9_4?arch=x86_64&epoch=1"; got != want {
		t.Errorf("purl %q, want %q", got, want)
	}
	if got, want := a.KernelPackage("5.14.0-1.el9.x86_64").PURL(), "pkg:generic/linux@5.14.0-1.el9.x86_64"; got != want {
		t.Errorf("kernel rpm does not know: purl %q, want %q", got, want)
	}
}
