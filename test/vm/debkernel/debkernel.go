// Package debkernel fetches a Debian kernel, its headers and kbuild, for tests.
//
// Fetch asks apt which kernel linux-image-amd64 currently depends on, downloads
// the unsigned image, the headers, the common headers and the matching kbuild
// package with `apt-get download` (never installing them), and extracts them
// with `dpkg -x` into one tree under the cache directory:
//
//	<cache>/deb/                        the downloaded .deb files
//	<cache>/kernel/<release>_<version>/ the extracted tree (Kernel.Root)
//
// A tree is complete once its marker file exists; the marker is written last
// and the tree is built in a temporary directory that is renamed into place,
// so an interrupted Fetch leaves nothing that a later one would trust.
package debkernel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kcare/kcare/internal/kimage"
)

// Kernel is an extracted Debian kernel: image, modules, headers and kbuild.
type Kernel struct {
	ABI     string // "6.1.0-56"
	Release string // "6.1.0-56-amd64", what uname -r prints
	Version string // Debian package version, "6.1.192-2"

	Root string // the extracted tree

	Vmlinuz string // Root/boot/vmlinuz-<release>, the bzImage
	Vmlinux string // Root/boot/vmlinux-<release>, the uncompressed ELF
	Config  string // Root/boot/config-<release>

	ModulesDir       string // Root/lib/modules/<release>
	HeadersDir       string // Root/usr/src/linux-headers-<release>
	CommonHeadersDir string // Root/usr/src/linux-headers-<abi>-common
}

// markerName is written last into a complete tree. Its name carries the
// layout version: a tree made by an older layout is rebuilt.
const markerName = ".kcare-kernel-v1.json"

// marker is the content of the marker file.
type marker struct {
	ABI     string `json:"abi"`
	Release string `json:"release"`
	Version string `json:"version"`
}

// DefaultCacheDir returns $KCARE_TEST_CACHE, or /var/cache/kcare-test.
func DefaultCacheDir() string {
	if d := os.Getenv("KCARE_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/kcare-test"
}

// Fetch returns the Debian kernel that linux-image-amd64 depends on today,
// downloading and extracting it into cacheDir unless a complete tree is
// already there. logf, if not nil, is told what is downloaded and extracted.
//
// When apt cannot tell the current kernel (no package lists and no network),
// Fetch returns the newest complete tree in cacheDir, if any.
func Fetch(ctx context.Context, cacheDir string, logf func(format string, args ...any)) (*Kernel, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, "kernel"), 0o755); err != nil {
		return nil, fmt.Errorf("fetch debian kernel: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("fetch debian kernel: %w", err)
	}
	defer unlock()

	release, err := currentRelease(ctx, logf)
	if err != nil {
		if k, ok := newestCachedKernel(cacheDir); ok {
			logf("debkernel: %v; using the cached kernel %s (%s)", err, k.Release, k.Version)
			if err := ensureVmlinux(k, logf); err != nil {
				return nil, fmt.Errorf("fetch debian kernel %s: %w", k.Release, err)
			}
			return k, nil
		}
		return nil, fmt.Errorf("fetch debian kernel: %w", err)
	}
	return fetchRelease(ctx, cacheDir, release, logf)
}

// fetchRelease downloads and extracts the kernel release (with its
// headers and kbuild) unless cacheDir has it already. The caller holds the
// cache lock.
func fetchRelease(ctx context.Context, cacheDir, release string, logf func(string, ...any)) (*Kernel, error) {
	abi, ok := strings.CutSuffix(release, "-amd64")
	if !ok {
		return nil, fmt.Errorf("fetch debian kernel: release %q is not an amd64 kernel", release)
	}
	imagePkg := "linux-image-" + release + "-unsigned"
	headersPkg := "linux-headers-" + release
	pkgs, err := show(ctx, imagePkg, headersPkg)
	if err != nil {
		return nil, fmt.Errorf("fetch debian kernel: %w", err)
	}
	version := pkgs[imagePkg].Version
	k := newKernel(filepath.Join(cacheDir, "kernel", release+"_"+version), abi, release, version)
	if complete(k.Root) {
		if err := ensureVmlinux(k, logf); err != nil {
			return nil, fmt.Errorf("fetch debian kernel %s: %w", release, err)
		}
		return k, nil
	}

	kbuildPkg := ""
	for _, d := range pkgs[headersPkg].Depends {
		if strings.HasPrefix(d, "linux-kbuild-") {
			kbuildPkg = d
		}
	}
	if kbuildPkg == "" {
		return nil, fmt.Errorf("fetch debian kernel: %s depends on no linux-kbuild package", headersPkg)
	}
	kbuild, err := show(ctx, kbuildPkg)
	if err != nil {
		return nil, fmt.Errorf("fetch debian kernel: %w", err)
	}
	kbuildVersion := kbuild[kbuildPkg].Version
	wants := []struct{ pkg, version string }{
		{imagePkg, version},
		{headersPkg, version},
		{"linux-headers-" + abi + "-common", version},
		{kbuildPkg, kbuildVersion},
	}
	debDir := filepath.Join(cacheDir, "deb")
	var debs []string
	for _, w := range wants {
		deb, err := download(ctx, debDir, w.pkg, w.version, logf)
		if err != nil {
			return nil, fmt.Errorf("fetch debian kernel: %w", err)
		}
		debs = append(debs, deb)
	}
	if err := extract(ctx, k, debs, logf); err != nil {
		return nil, fmt.Errorf("fetch debian kernel %s: %w", release, err)
	}
	return k, nil
}

func newKernel(root, abi, release, version string) *Kernel {
	return &Kernel{
		ABI:              abi,
		Release:          release,
		Version:          version,
		Root:             root,
		Vmlinuz:          filepath.Join(root, "boot", "vmlinuz-"+release),
		Vmlinux:          filepath.Join(root, "boot", "vmlinux-"+release),
		Config:           filepath.Join(root, "boot", "config-"+release),
		ModulesDir:       filepath.Join(root, "lib", "modules", release),
		HeadersDir:       filepath.Join(root, "usr", "src", "linux-headers-"+release),
		CommonHeadersDir: filepath.Join(root, "usr", "src", "linux-headers-"+abi+"-common"),
	}
}

// complete reports whether the tree at root has its marker.
func complete(root string) bool {
	_, err := os.Stat(filepath.Join(root, markerName))
	return err == nil
}

// newestCachedKernel returns the complete tree in cacheDir with the
// highest ABI number: the one linux-image-amd64 last depended on, when
// tests have also fetched older kernels by release.
func newestCachedKernel(cacheDir string) (*Kernel, bool) {
	matches, _ := filepath.Glob(filepath.Join(cacheDir, "kernel", "*", markerName))
	var best *Kernel
	bestABI := -1
	for _, p := range matches {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var m marker
		if err := json.Unmarshal(data, &m); err != nil || m.Release == "" {
			continue
		}
		i := strings.LastIndexByte(m.ABI, '-')
		n, err := strconv.Atoi(m.ABI[i+1:])
		if i < 0 || err != nil {
			continue
		}
		if n > bestABI {
			best, bestABI = newKernel(filepath.Dir(p), m.ABI, m.Release, m.Version), n
		}
	}
	return best, best != nil
}

// currentRelease returns the kernel release linux-image-amd64 depends on,
// running `apt-get update` once if apt knows no such package yet.
func currentRelease(ctx context.Context, logf func(string, ...any)) (string, error) {
	out, err := run(ctx, "", "apt-cache", "depends", "linux-image-amd64")
	if err == nil {
		if r, ok := parseImageDepends(out); ok {
			return r, nil
		}
	}
	logf("debkernel: apt knows no linux-image-amd64; running apt-get update")
	if _, err := run(ctx, "", "apt-get", "update"); err != nil {
		return "", err
	}
	out, err = run(ctx, "", "apt-cache", "depends", "linux-image-amd64")
	if err != nil {
		return "", err
	}
	r, ok := parseImageDepends(out)
	if !ok {
		return "", errors.New("apt-cache depends linux-image-amd64 names no linux-image-<release> package")
	}
	return r, nil
}

// parseImageDepends returns the release of the first linux-image-<release>
// package in the output of `apt-cache depends linux-image-amd64`.
func parseImageDepends(out []byte) (string, bool) {
	for _, d := range parseDepends(out) {
		if r, ok := strings.CutPrefix(d, "linux-image-"); ok {
			r = strings.TrimSuffix(r, "-unsigned")
			if r != "" {
				return r, true
			}
		}
	}
	return "", false
}

// parseDepends returns the package names on the Depends lines of
// `apt-cache depends` output, in order, alternatives included.
func parseDepends(out []byte) []string {
	var deps []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "|")
		name, ok := strings.CutPrefix(line, "Depends:")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if name = strings.Trim(name, "<>"); name != "" {
			deps = append(deps, name)
		}
	}
	return deps
}

// pkgInfo is what Fetch needs of a package's `apt-cache show` stanza.
type pkgInfo struct {
	Version string
	Depends []string // package names; of alternatives, the first
}

// show returns the candidate version and dependencies of each package,
// asking apt-cache once: on a machine without apt's binary cache every
// call parses all the package lists again.
func show(ctx context.Context, pkgs ...string) (map[string]pkgInfo, error) {
	out, err := run(ctx, "", "apt-cache", append([]string{"show", "--no-all-versions"}, pkgs...)...)
	if err != nil {
		return nil, err
	}
	infos := parseShow(out)
	for _, p := range pkgs {
		if infos[p].Version == "" {
			return nil, fmt.Errorf("apt-cache show %s: no version", p)
		}
	}
	return infos, nil
}

// parseShow parses `apt-cache show` output: Package, Version and Depends
// of each stanza. The first stanza of a package wins.
func parseShow(out []byte) map[string]pkgInfo {
	infos := make(map[string]pkgInfo)
	var pkg string
	var info pkgInfo
	flush := func() {
		if _, dup := infos[pkg]; pkg != "" && !dup {
			infos[pkg] = info
		}
		pkg, info = "", pkgInfo{}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue // a continuation line
		}
		value = strings.TrimSpace(value)
		switch key {
		case "Package":
			if pkg != "" {
				flush()
			}
			pkg = value
		case "Version":
			info.Version = value
		case "Depends":
			for _, d := range strings.Split(value, ",") {
				alt, _, _ := strings.Cut(d, "|")
				if name := strings.Fields(alt); len(name) > 0 {
					info.Depends = append(info.Depends, name[0])
				}
			}
		}
	}
	flush()
	return infos
}

// debFileName is the name apt-get download gives a package's file: the
// epoch colon, if any, is escaped.
func debFileName(pkg, version, arch string) string {
	return pkg + "_" + strings.ReplaceAll(version, ":", "%3a") + "_" + arch + ".deb"
}

// download returns the path of pkg=version's .deb in debDir, fetching it
// with apt-get download unless it is there already.
func download(ctx context.Context, debDir, pkg, version string, logf func(string, ...any)) (string, error) {
	for _, arch := range []string{"amd64", "all"} {
		p := filepath.Join(debDir, debFileName(pkg, version, arch))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(debDir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// apt drops to the _apt user to download; let it write here.
	if err := os.Chmod(tmp, 0o777); err != nil {
		return "", err
	}
	logf("debkernel: apt-get download %s=%s", pkg, version)
	if _, err := run(ctx, tmp, "apt-get", "download", pkg+"="+version); err != nil {
		return "", err
	}
	got, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(got) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s left %d .deb files", pkg, version, len(got))
	}
	dst := filepath.Join(debDir, filepath.Base(got[0]))
	if err := os.Rename(got[0], dst); err != nil {
		return "", err
	}
	if fi, err := os.Stat(dst); err == nil {
		logf("debkernel: downloaded %s (%d MiB)", filepath.Base(dst), fi.Size()>>20)
	}
	return dst, nil
}

// extract builds k.Root from debs: dpkg -x into a temporary directory,
// depmod, the uncompressed vmlinux, the marker, then a rename into place.
func extract(ctx context.Context, k *Kernel, debs []string, logf func(string, ...any)) error {
	parent := filepath.Dir(k.Root)
	tmp, err := os.MkdirTemp(parent, ".extract-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, deb := range debs {
		logf("debkernel: extracting %s", filepath.Base(deb))
		if _, err := run(ctx, "", "dpkg", "-x", deb, tmp); err != nil {
			return err
		}
	}
	t := newKernel(tmp, k.ABI, k.Release, k.Version)

	// The image ships absolute build and source links; point them into
	// the tree so they resolve wherever the tree is.
	for name, target := range map[string]string{
		"build":  "../../../usr/src/linux-headers-" + k.Release,
		"source": "../../../usr/src/linux-headers-" + k.ABI + "-common",
	} {
		link := filepath.Join(t.ModulesDir, name)
		if _, err := os.Lstat(link); err == nil {
			if err := os.Remove(link); err != nil {
				return err
			}
			if err := os.Symlink(target, link); err != nil {
				return err
			}
		}
	}

	// The image ships no modules.dep.
	depmod, err := lookPath("depmod")
	if err != nil {
		return fmt.Errorf("%w (install kmod)", err)
	}
	if _, err := run(ctx, "", depmod, "-b", tmp, k.Release); err != nil {
		return err
	}

	if err := ensureVmlinux(t, logf); err != nil {
		return err
	}

	m, err := json.Marshal(marker{ABI: k.ABI, Release: k.Release, Version: k.Version})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, markerName), append(m, '\n'), 0o644); err != nil {
		return err
	}
	// A tree without a marker is left over from an interrupted or older
	// run: replace it.
	if err := os.RemoveAll(k.Root); err != nil {
		return err
	}
	if err := os.Rename(tmp, k.Root); err != nil {
		return err
	}
	logf("debkernel: kernel %s (%s) ready in %s", k.Release, k.Version, k.Root)
	return nil
}

// ensureVmlinux writes k.Vmlinux, the uncompressed ELF of k.Vmlinuz,
// unless it is there already.
func ensureVmlinux(k *Kernel, logf func(string, ...any)) error {
	if _, err := os.Stat(k.Vmlinux); err == nil {
		return nil
	}
	logf("debkernel: decompressing %s", filepath.Base(k.Vmlinuz))
	elf, err := kimage.VmlinuxFile(k.Vmlinuz)
	if err != nil {
		return err
	}
	tmp := k.Vmlinux + ".tmp"
	if err := os.WriteFile(tmp, elf, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, k.Vmlinux)
}

// lookPath finds an administrator's command even when sbin is not in PATH.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// run runs a command in dir and returns its stdout; the error carries stderr.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
		}
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}

// lockFile takes an exclusive lock on path, so that test binaries running
// in parallel fetch one at a time. It gives up when ctx is done.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// Closing the file does not interrupt flock; the goroutine ends
		// when the holder lets go.
		go func() { <-done; f.Close() }()
		return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
	}
}
