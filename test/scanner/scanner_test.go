// Package scanner_test checks the scanner interface (scanner/, the
// LD_PRELOAD library) on the host with Debian's real programs: uname from
// coreutils, dpkg-query and dpkg against a test dpkg database, and rpm
// against a test rpm database with kernel packages built by rpmbuild. Real
// users are made for the test (useradd) and removed after it; the kcare
// state, the fake /sys and the dpkg database live under a test root that
// KCARE_SCANNER_ROOT points the library at. No kernel is touched.
package scanner_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	kcarectl "github.com/kcare/kcare/cmd/kcarectl/cli"
	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/trust"
)

// unavailable skips the test, or fails it in CI, where every tool must be there.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// need finds a program of a Debian package.
func need(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		unavailable(t, "%s not found (install %s)", prog, pkg)
	}
	return p
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// user is a system user made for the test.
type user struct {
	name     string
	uid, gid int
}

// root is uid 0: the library must never change what root sees.
var root = user{name: "root"}

func addUser(t *testing.T, prefix string) user {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	if out, err := exec.Command("useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	id := func(flag string) int {
		out, err := exec.Command("id", flag, name).Output()
		if err != nil {
			t.Fatalf("id %s %s: %v", flag, name, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return user{name: name, uid: id("-u"), gid: id("-g")}
}

// host is what every check needs: the built library and the users.
type host struct {
	lib            string
	dir            string // world-readable scratch directory
	scanner, other user
}

func newHost(t *testing.T) *host {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "the scanner interface tests make users and run programs as them: run as root")
	}
	for _, p := range [][2]string{{"make", "make"}, {"gcc", "gcc"}, {"useradd", "passwd"}, {"userdel", "passwd"},
		{"setpriv", "util-linux"}, {"uname", "coreutils"}, {"dpkg-query", "dpkg"}, {"dpkg", "dpkg"},
		{"rpm", "rpm"}, {"rpmbuild", "rpm"}} {
		need(t, p[0], p[1])
	}
	dir, err := os.MkdirTemp("", "kcare-scanner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := &host{dir: dir, lib: filepath.Join(dir, "libkcare_scanner.so")}
	cmd := exec.Command("make", "-s", "-C", filepath.Join(repoRoot(), "scanner"), "OUT="+h.lib)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make -C scanner: %v\n%s", err, out)
	}
	h.scanner = addUser(t, "kcscan_")
	h.other = addUser(t, "kcother_")
	return h
}

// result is what a program did.
type result struct {
	stdout, stderr string
	code           int
}

// run runs argv as u, with the library preloaded if preload, the kcare
// paths under root.
func (h *host) run(t *testing.T, u user, preload bool, root string, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := argv
	if u.uid != 0 {
		args = append([]string{"setpriv", fmt.Sprintf("--reuid=%d", u.uid), fmt.Sprintf("--regid=%d", u.gid), "--init-groups", "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "HOME=/", "COLUMNS=200", "KCARE_SCANNER_ROOT=" + root}
	if preload {
		cmd.Env = append(cmd.Env, "LD_PRELOAD="+h.lib)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// The Debian kernel the deb root pretends to run, and its effective level.
const (
	debImage      = "linux-image-" + fakekernel.Release
	debVersion    = "6.1.192-2"
	debEffective  = "6.1.195-1"
	debEffRelease = "6.1.0-56.kcare2-amd64"
)

// dpkgStatus is the test dpkg database: the running kernel's signed image
// and its meta package, an older kernel still installed, the running
// kernel's headers, and something else.
var dpkgStatus = `Package: bash
Essential: yes
Status: install ok installed
Priority: required
Section: shells
Installed-Size: 7164
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 5.2.15-2+b7
Description: GNU Bourne Again SHell

Package: linux-headers-6.1.0-56-amd64
Status: install ok installed
Priority: optional
Section: kernel
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Source: linux
Version: 6.1.192-2
Description: Header files for Linux 6.1.0-56-amd64

Package: linux-image-6.1.0-55-amd64
Status: install ok installed
Priority: optional
Section: kernel
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Source: linux-signed-amd64 (6.1.180+1)
Version: 6.1.180-1
Description: Linux 6.1 for 64-bit PCs (signed)
 The Linux kernel 6.1 and modules for use on PCs with AMD64, Intel 64 or
 VIA Nano processors.

Package: linux-image-6.1.0-56-amd64
Status: install ok installed
Priority: optional
Section: kernel
Installed-Size: 408000
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Description: Linux 6.1 for 64-bit PCs (signed)
 The Linux kernel 6.1 and modules for use on PCs with AMD64, Intel 64 or
 VIA Nano processors.

Package: linux-image-amd64
Status: install ok installed
Priority: optional
Section: kernel
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)
Description: Linux for 64-bit PCs (meta-package)
`

// newDebRoot makes a root where a real agent applied a level to the fake
// kernel (so the state files are the agent's own), with the test dpkg
// database and the scanner user enabled by kcarectl itself.
func newDebRoot(t *testing.T, h *host) (string, *agent.Agent) {
	t.Helper()
	dir, err := os.MkdirTemp(h.dir, "deb-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	k, err := fakekernel.New(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	priv, pub, err := trust.GenerateKey("kcare scanner test", "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := trust.ReadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := trust.ReadKeyring(pub)
	if err != nil {
		t.Fatal(err)
	}
	m := bundle.Manifest{
		Name:  fakekernel.Release + "-2",
		Level: 2,
		Kernel: bundle.Kernel{BuildID: fakekernel.BuildID, Release: fakekernel.Release,
			Version: fakekernel.Version, KernelID: kernel.KernelID(fakekernel.Version)},
		Module:           bundle.Module{File: "kcare_test_l2.ko", Name: "kcare_test_l2", Vermagic: fakekernel.Release + " SMP preempt mod_unload modversions "},
		CVEs:             []bundle.CVE{{ID: "CVE-2026-1001"}, {ID: "CVE-2026-1002"}},
		EffectiveRelease: debEffRelease,
		EffectiveVersion: debEffective,
		Released:         time.Date(2026, 11, 12, 9, 0, 0, 0, time.UTC),
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, m, fakekernel.Module(m.Module.Name, m.Module.Vermagic, true)); err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.TransitionTimeout = 5 * time.Second
	a := &agent.Agent{Root: dir, Config: cfg, Keys: keys, Loader: k}
	if _, err := a.Apply(context.Background(), buf.Bytes(), sig); err != nil {
		t.Fatalf("apply: %v", err)
	}

	db := filepath.Join(dir, "var/lib/dpkg")
	for _, d := range []string{"updates", "info"} {
		if err := os.MkdirAll(filepath.Join(db, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(db, "status"), []byte(dpkgStatus), 0o644); err != nil {
		t.Fatal(err)
	}
	enableScanner(t, dir, h.scanner.name)
	return dir, a
}

// enableScanner runs kcarectl --scanner-interface enable on root.
func enableScanner(t *testing.T, root, name string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := kcarectl.Run(context.Background(), []string{"--root", root, "--scanner-interface", "enable", name}, &stdout, &stderr); code != 0 {
		t.Fatalf("kcarectl --scanner-interface enable %s: exit %d: %s", name, code, stderr.String())
	}
}

// replaceFields returns uname -a text with its release and version
// replaced: "Linux HOST REL VERSION... MACHINE GNU/Linux".
func replaceFields(all, release, version, newRelease, newVersion string) string {
	return strings.Replace(strings.Replace(all, " "+release+" ", " "+newRelease+" ", 1), " "+version+" ", " "+newVersion+" ", 1)
}

func TestUname(t *testing.T) {
	h := newHost(t)
	dir, a := newDebRoot(t, h)
	info, err := a.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.State != "applied" {
		t.Fatalf("info state %q, want applied", info.State)
	}
	// What kcare-uname prints comes from Info; the library must agree.
	wantRelease, wantVersion := info.EffectiveRelease, info.EffectiveKernelVersion
	if wantRelease != debEffRelease || wantVersion != "#1 SMP PREEMPT_DYNAMIC Debian 6.1.195-1 (2026-11-12)" {
		t.Fatalf("agent's effective identity %q / %q", wantRelease, wantVersion)
	}

	release := strings.TrimSpace(h.run(t, root, false, dir, "uname", "-r").stdout)
	version := strings.TrimSpace(h.run(t, root, false, dir, "uname", "-v").stdout)
	all := h.run(t, root, false, dir, "uname", "-a").stdout

	for _, tt := range []struct {
		name string
		u    user
		want map[string]string // by option
	}{
		{"scanner_user", h.scanner, map[string]string{"-r": wantRelease + "\n", "-v": wantVersion + "\n",
			"-a": replaceFields(all, release, version, wantRelease, wantVersion), "-s": "Linux\n", "-m": "x86_64\n"}},
		{"root", root, map[string]string{"-r": release + "\n", "-v": version + "\n", "-a": all}},
		{"other_user", h.other, map[string]string{"-r": release + "\n", "-v": version + "\n", "-a": all}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for opt, want := range tt.want {
				r := h.run(t, tt.u, true, dir, "uname", opt)
				if r.code != 0 || r.stdout != want || r.stderr != "" {
					t.Errorf("uname %s as %s: exit %d, %q (stderr %q); want %q", opt, tt.u.name, r.code, r.stdout, r.stderr, want)
				}
			}
		})
	}
	unchanged(t, h, dir, map[string]string{"-r": release + "\n", "-a": all}, same, func(opt string) []string { return []string{"uname", opt} })
}

// unchanged breaks the state in each way that must leave everything as it
// was, and checks the scanner user sees the original output (after norm)
// and exit 0.
func unchanged(t *testing.T, h *host, dir string, want map[string]string, norm func(string) string, argv func(opt string) []string) {
	t.Helper()
	effective := filepath.Join(dir, "var/lib/kcare", agent.EffectiveFile)
	text, err := os.ReadFile(effective)
	if err != nil {
		t.Fatal(err)
	}
	e, err := agent.ParseEffective(text)
	if err != nil {
		t.Fatal(err)
	}
	enabled := filepath.Join(dir, "sys/kernel/livepatch", e.Module, "enabled")
	notes := filepath.Join(dir, "sys/kernel/notes")
	users := filepath.Join(dir, "etc/sysconfig/kcare/scanner-users")
	for _, tt := range []struct {
		name   string
		break_ func() (restore func())
	}{
		{"state_file_missing", func() func() { return hide(t, effective) }},
		{"state_file_unreadable", func() func() { return chmod(t, effective, 0o600) }},
		{"state_file_garbage", func() func() { return replace(t, effective, "\x00\xff garbage\n\n") }},
		{"state_file_truncated", func() func() { return replace(t, effective, debEffRelease+"\n#1 SMP") }},
		{"patch_disabled", func() func() { return replace(t, enabled, "0\n") }},
		{"patch_gone", func() func() { return hide(t, filepath.Dir(enabled)) }},
		{"other_kernel_build", func() func() {
			return replace(t, notes, string(fakekernel.Notes("0123456789abcdef0123456789abcdef01234567")))
		}},
		{"no_scanner_users", func() func() { return hide(t, users) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			restore := tt.break_()
			defer restore()
			for opt, w := range want {
				r := h.run(t, h.scanner, true, dir, argv(opt)...)
				if r.code != 0 || norm(r.stdout) != w {
					t.Errorf("%v as the scanner user: exit %d, %q (stderr %q); want exit 0, %q", argv(opt), r.code, r.stdout, r.stderr, w)
				}
			}
		})
	}
}

func hide(t *testing.T, path string) func() {
	t.Helper()
	if err := os.Rename(path, path+".hidden"); err != nil {
		t.Fatal(err)
	}
	return func() { os.Rename(path+".hidden", path) }
}

func chmod(t *testing.T, path string, mode os.FileMode) func() {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
	return func() { os.Chmod(path, st.Mode().Perm()) }
}

func replace(t *testing.T, path, content string) func() {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte(content), 0o644)
	return func() { os.WriteFile(path, old, 0o644) }
}

func TestDpkg(t *testing.T) {
	h := newHost(t)
	dir, _ := newDebRoot(t, h)
	admin := "--admindir=" + filepath.Join(dir, "var/lib/dpkg")
	query := []string{"dpkg-query", admin, "-W", "-f=${Package} ${Version} ${source:Version}\n"}

	original := "bash 5.2.15-2+b7 5.2.15-2+b7\n" +
		"linux-headers-6.1.0-56-amd64 6.1.192-2 6.1.192-2\n" +
		"linux-image-6.1.0-55-amd64 6.1.180-1 6.1.180+1\n" +
		"linux-image-6.1.0-56-amd64 6.1.192-2 6.1.192+2\n" +
		"linux-image-amd64 6.1.192-2 6.1.192+2\n"
	effective := "bash 5.2.15-2+b7 5.2.15-2+b7\n" +
		"linux-headers-6.1.0-56-amd64 6.1.192-2 6.1.192-2\n" +
		"linux-image-6.1.0-55-amd64 6.1.180-1 6.1.180+1\n" +
		"linux-image-6.1.0-56-amd64 6.1.195-1 6.1.195+1\n" +
		"linux-image-amd64 6.1.195-1 6.1.195+1\n"
	if r := h.run(t, root, false, dir, query...); r.stdout != original {
		t.Fatalf("dpkg-query -W without the library:\n%s\nwant\n%s", r.stdout, original)
	}

	for _, tt := range []struct {
		name string
		u    user
		want string
	}{
		{"scanner_user", h.scanner, effective},
		{"root", root, original},
		{"other_user", h.other, original},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := h.run(t, tt.u, true, dir, query...)
			if r.code != 0 || r.stdout != tt.want {
				t.Errorf("dpkg-query -W as %s: exit %d (stderr %q)\n%s\nwant\n%s", tt.u.name, r.code, r.stderr, r.stdout, tt.want)
			}
			// dpkg -l and dpkg -s go through dpkg-query.
			version := debVersion
			if tt.want == effective {
				version = debEffective
			}
			r = h.run(t, tt.u, true, dir, "dpkg", admin, "-l", debImage)
			if r.code != 0 || !containsFields(r.stdout, "ii", debImage, version, "amd64") {
				t.Errorf("dpkg -l %s as %s: exit %d, %q; want version %s", debImage, tt.u.name, r.code, r.stdout, version)
			}
			r = h.run(t, tt.u, true, dir, "dpkg", admin, "-s", debImage)
			if r.code != 0 || !strings.Contains(r.stdout, "\nVersion: "+version+"\n") {
				t.Errorf("dpkg -s %s as %s: exit %d, %q; want Version: %s", debImage, tt.u.name, r.code, r.stdout, version)
			}
			r = h.run(t, tt.u, true, dir, "dpkg", admin, "-l", "linux-image-6.1.0-55-amd64")
			if r.code != 0 || !containsFields(r.stdout, "ii", "linux-image-6.1.0-55-amd64", "6.1.180-1", "amd64") {
				t.Errorf("dpkg -l of the older kernel as %s: %q; want it unchanged", tt.u.name, r.stdout)
			}
		})
	}
	unchanged(t, h, dir, map[string]string{"W": original}, same, func(string) []string { return query })
}

// containsFields reports whether some line of out has exactly these first fields.
func containsFields(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && strings.Join(f[:len(fields)], " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

// The Red Hat kernel the rpm root pretends to run.
const (
	rhRelease   = "5.14.0-427.13.1.el9_4.x86_64"
	rhEffective = "5.14.0-427.20.1.el9_4"
	rhBuildID   = "8a1f0e3c5b7d9e2f4a6c8b0d1e3f5a7c9b2d4e6f"
)

const spec = `%define debug_package %{nil}
Name: %{pkgname}
Version: %{pkgver}
Release: %{pkgrel}
Summary: kcare scanner interface test package
License: GPL-2.0-only
%description
A package for the kcare scanner interface tests.
%files
`

// newRPMRoot makes a root whose effective_version says a Red Hat kernel
// runs with a level applied, and an rpm database holding its packages.
func newRPMRoot(t *testing.T, h *host) (dir, dbpath string) {
	t.Helper()
	dir, err := os.MkdirTemp(h.dir, "rpm-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	m := bundle.Manifest{
		Level:            3,
		Kernel:           bundle.Kernel{BuildID: rhBuildID, Release: rhRelease},
		Module:           bundle.Module{Name: "kcare_rh_l3"},
		EffectiveRelease: rhEffective + ".x86_64",
		EffectiveVersion: rhEffective,
		Released:         time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC),
	}
	files := map[string][]byte{
		"var/lib/kcare/" + agent.EffectiveFile:     agent.EffectiveOf(&m, "#1 SMP PREEMPT_DYNAMIC Fri Apr 12 10:45:03 EDT 2024").Marshal(),
		"sys/kernel/notes":                         fakekernel.Notes(rhBuildID),
		"sys/kernel/livepatch/kcare_rh_l3/enabled": []byte("1\n"),
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, c, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	enableScanner(t, dir, h.scanner.name)

	top := filepath.Join(h.dir, "rpmbuild")
	specPath := filepath.Join(h.dir, "test.spec")
	os.WriteFile(specPath, []byte(spec), 0o644)
	var rpms []string
	for _, p := range [][3]string{
		{"kernel-core", "5.14.0", "362.8.1.el9_3"}, // an older kernel, still installed
		{"kernel-core", "5.14.0", "427.13.1.el9_4"},
		{"kernel", "5.14.0", "427.13.1.el9_4"},
		{"kernel-devel", "5.14.0", "427.13.1.el9_4"},
		{"zlib", "1.2.11", "40.el9"},
	} {
		out, err := exec.Command("rpmbuild", "-bb", "--quiet", "--target", "x86_64", "--define", "_topdir "+top,
			"--define", "pkgname "+p[0], "--define", "pkgver "+p[1], "--define", "pkgrel "+p[2], specPath).CombinedOutput()
		if err != nil {
			t.Fatalf("rpmbuild %s: %v\n%s", p[0], err, out)
		}
		rpms = append(rpms, filepath.Join(top, "RPMS/x86_64", fmt.Sprintf("%s-%s-%s.x86_64.rpm", p[0], p[1], p[2])))
	}
	dbpath = filepath.Join(h.dir, "rpmdb")
	if out, err := exec.Command("rpm", "--dbpath", dbpath, "--initdb").CombinedOutput(); err != nil {
		t.Fatalf("rpm --initdb: %v\n%s", err, out)
	}
	args := append([]string{"--dbpath", dbpath, "-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch", "--ignoreos"}, rpms...)
	if out, err := exec.Command("rpm", args...).CombinedOutput(); err != nil {
		t.Fatalf("rpm -i --justdb: %v\n%s", err, out)
	}
	return dir, dbpath
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func TestRPM(t *testing.T) {
	h := newHost(t)
	dir, db := newRPMRoot(t, h)
	rpm := func(args ...string) []string { return append([]string{"rpm", "--dbpath", db}, args...) }

	originalQA := "kernel 5.14.0-427.13.1.el9_4\nkernel-core 5.14.0-362.8.1.el9_3\nkernel-core 5.14.0-427.13.1.el9_4\nkernel-devel 5.14.0-427.13.1.el9_4\nzlib 1.2.11-40.el9\n"
	effectiveQA := "kernel 5.14.0-427.20.1.el9_4\nkernel-core 5.14.0-362.8.1.el9_3\nkernel-core 5.14.0-427.20.1.el9_4\nkernel-devel 5.14.0-427.13.1.el9_4\nzlib 1.2.11-40.el9\n"
	qa := rpm("-qa", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\n")
	if r := h.run(t, root, false, dir, qa...); sortedLines(r.stdout) != originalQA {
		t.Fatalf("rpm -qa without the library:\n%s\nwant\n%s", r.stdout, originalQA)
	}

	for _, tt := range []struct {
		name          string
		u             user
		qa, kernel    string
		core, version string
	}{
		{"scanner_user", h.scanner, effectiveQA, "kernel-5.14.0-427.20.1.el9_4.x86_64\n",
			"kernel-core-5.14.0-362.8.1.el9_3.x86_64\nkernel-core-5.14.0-427.20.1.el9_4.x86_64\n", "427.20.1.el9_4"},
		{"root", root, originalQA, "kernel-5.14.0-427.13.1.el9_4.x86_64\n",
			"kernel-core-5.14.0-362.8.1.el9_3.x86_64\nkernel-core-5.14.0-427.13.1.el9_4.x86_64\n", "427.13.1.el9_4"},
		{"other_user", h.other, originalQA, "kernel-5.14.0-427.13.1.el9_4.x86_64\n",
			"kernel-core-5.14.0-362.8.1.el9_3.x86_64\nkernel-core-5.14.0-427.13.1.el9_4.x86_64\n", "427.13.1.el9_4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if r := h.run(t, tt.u, true, dir, qa...); r.code != 0 || sortedLines(r.stdout) != tt.qa {
				t.Errorf("rpm -qa --qf as %s: exit %d (stderr %q)\n%s\nwant\n%s", tt.u.name, r.code, r.stderr, r.stdout, tt.qa)
			}
			if r := h.run(t, tt.u, true, dir, rpm("-q", "kernel")...); r.code != 0 || r.stdout != tt.kernel {
				t.Errorf("rpm -q kernel as %s: exit %d, %q (stderr %q); want %q", tt.u.name, r.code, r.stdout, r.stderr, tt.kernel)
			}
			if r := h.run(t, tt.u, true, dir, rpm("-q", "kernel-core")...); r.code != 0 || sortedLines(r.stdout) != tt.core {
				t.Errorf("rpm -q kernel-core as %s: exit %d, %q; want %q", tt.u.name, r.code, r.stdout, tt.core)
			}
			r := h.run(t, tt.u, true, dir, rpm("-qi", "kernel")...)
			if r.code != 0 || !containsFields(r.stdout, "Release", ":", tt.version) || !containsFields(r.stdout, "Version", ":", "5.14.0") {
				t.Errorf("rpm -qi kernel as %s: exit %d, %q; want Release %s", tt.u.name, r.code, r.stdout, tt.version)
			}
		})
	}
	unchanged(t, h, dir, map[string]string{"qa": originalQA}, sortedLines, func(string) []string { return qa })
}

func same(s string) string { return s }
