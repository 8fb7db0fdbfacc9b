package debian

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/flock"
	"github.com/kcare/kcare/internal/kimage"
)

// Kernel is an extracted Debian kernel: image, modules, headers and kbuild.
//
//	<cache>/deb/                        the downloaded .deb files
//	<cache>/kernel/<release>_<version>/ the extracted tree (Root)
//
// A tree is complete once its marker file exists; the marker is written
// last and the tree is built in a temporary directory that is renamed into
// place, so an interrupted fetch leaves nothing a later one would trust.
type Kernel struct {
	ABI     string // "6.1.0-56"
	Release string // "6.1.0-56-amd64", what uname -r prints
	Version string // Debian package version, "6.1.192-2"

	Root string // the extracted tree

	Vmlinuz string // Root/boot/vmlinuz-<release>, the bzImage
	Vmlinux string // Root/boot/vmlinux-<release>, the uncompressed ELF
	Config  string // Root/boot/config-<release>

	// ModulesDir is Root/lib/modules/<release>. Packages that install
	// modules under usr/lib/modules (trixie) get a lib -> usr/lib link,
	// as a merged-/usr system has.
	ModulesDir       string
	HeadersDir       string // Root/usr/src/linux-headers-<release>
	CommonHeadersDir string // Root/usr/src/linux-headers-<abi>-common
}

// Family returns the kernel's family name, "" for none.
func (k *Kernel) Family() string {
	f, _ := FamilyOf(k.Release)
	return f.Name
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

// Timings are how long the steps of a fetch took; zero for a step the
// cache spared.
type Timings struct {
	Download time.Duration
	Extract  time.Duration
}

// FetchKernel returns the kernel release, with its headers and kbuild,
// downloading and extracting it into cacheDir unless a complete tree is
// already there. The archive must serve the release.
func FetchKernel(ctx context.Context, a *Archive, cacheDir, release string, logf func(format string, args ...any)) (*Kernel, error) {
	k, _, err := FetchKernelTimed(ctx, a, cacheDir, release, logf)
	return k, err
}

// FetchKernelTimed is FetchKernel, saying how long each step took.
func FetchKernelTimed(ctx context.Context, a *Archive, cacheDir, release string, logf func(format string, args ...any)) (*Kernel, Timings, error) {
	var tm Timings
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, "kernel"), 0o755); err != nil {
		return nil, tm, fmt.Errorf("fetch kernel %s: %w", release, err)
	}
	unlock, err := flock.Path(ctx, filepath.Join(cacheDir, ".lock"), 0o666, flock.Forever)
	if err != nil {
		return nil, tm, fmt.Errorf("fetch kernel %s: %w", release, err)
	}
	defer unlock()
	if k, ok := cachedRelease(cacheDir, release); ok {
		if err := ensureVmlinux(k, logf); err != nil {
			return nil, tm, fmt.Errorf("fetch kernel %s: %w", release, err)
		}
		return k, tm, nil
	}
	k, tm, err := fetchRelease(ctx, a, cacheDir, release, logf)
	if err != nil {
		return nil, tm, fmt.Errorf("fetch kernel %s: %w", release, err)
	}
	return k, tm, nil
}

func fetchRelease(ctx context.Context, a *Archive, cacheDir, release string, logf func(string, ...any)) (*Kernel, Timings, error) {
	var tm Timings
	abi, ok := strings.CutSuffix(release, "-amd64")
	if !ok {
		return nil, tm, fmt.Errorf("release %q is not an amd64 kernel", release)
	}
	imagePkg := "linux-image-" + release + "-unsigned"
	headersPkg := "linux-headers-" + release
	commonPkg := "linux-headers-" + abi + "-common"
	pkgs, err := a.Show(ctx, imagePkg, headersPkg, commonPkg)
	if err != nil {
		return nil, tm, err
	}
	for _, p := range []string{imagePkg, headersPkg, commonPkg} {
		if pkgs[p].Version == "" {
			return nil, tm, fmt.Errorf("%s: %w (suites %s)", p, ErrNotServed, strings.Join(Suites(), " "))
		}
	}
	version := pkgs[imagePkg].Version
	k := NewKernel(filepath.Join(cacheDir, "kernel", release+"_"+version), abi, release, version)
	if complete(k.Root) {
		return k, tm, ensureVmlinux(k, logf)
	}

	kbuildPkg := ""
	for _, d := range pkgs[headersPkg].Depends {
		if strings.HasPrefix(d, "linux-kbuild-") {
			kbuildPkg = d
		}
	}
	if kbuildPkg == "" {
		return nil, tm, fmt.Errorf("%s depends on no linux-kbuild package", headersPkg)
	}
	kbuild, err := a.Show(ctx, kbuildPkg)
	if err != nil {
		return nil, tm, err
	}
	if kbuild[kbuildPkg].Version == "" {
		return nil, tm, fmt.Errorf("%s: %w", kbuildPkg, ErrNotServed)
	}
	wants := []struct{ pkg, version string }{
		{imagePkg, version},
		{headersPkg, version},
		{commonPkg, version},
		{kbuildPkg, kbuild[kbuildPkg].Version},
	}
	debDir := filepath.Join(cacheDir, "deb")
	var debs []string
	start := time.Now()
	for _, w := range wants {
		deb, err := a.Download(ctx, debDir, w.pkg, w.version)
		if err != nil {
			return nil, tm, err
		}
		debs = append(debs, deb)
	}
	tm.Download = time.Since(start)
	start = time.Now()
	if err := extract(ctx, k, debs, logf); err != nil {
		return nil, tm, err
	}
	tm.Extract = time.Since(start)
	return k, tm, nil
}

// NewKernel names the parts of a kernel tree at root.
func NewKernel(root, abi, release, version string) *Kernel {
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

// cachedKernels returns the complete trees in cacheDir.
func cachedKernels(cacheDir string) []*Kernel {
	matches, _ := filepath.Glob(filepath.Join(cacheDir, "kernel", "*", markerName))
	var out []*Kernel
	for _, p := range matches {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var m marker
		if err := json.Unmarshal(data, &m); err != nil || m.Release == "" {
			continue
		}
		out = append(out, NewKernel(filepath.Dir(p), m.ABI, m.Release, m.Version))
	}
	return out
}

// cachedRelease returns the complete tree of release in cacheDir, the
// newest version when there are several.
func cachedRelease(cacheDir, release string) (*Kernel, bool) {
	var best *Kernel
	for _, k := range cachedKernels(cacheDir) {
		if k.Release == release && (best == nil || CompareVersions(k.Version, best.Version) > 0) {
			best = k
		}
	}
	return best, best != nil
}

// NewestCached returns the complete tree in cacheDir of the family with
// the highest version, for a harness offline.
func NewestCached(cacheDir, family string) (*Kernel, bool) {
	var best *Kernel
	for _, k := range cachedKernels(cacheDir) {
		if k.Family() == family && (best == nil || CompareVersions(k.Version, best.Version) > 0) {
			best = k
		}
	}
	return best, best != nil
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
		logf("debian: extracting %s", filepath.Base(deb))
		if _, err := run(ctx, "", "dpkg", "-x", deb, tmp); err != nil {
			return err
		}
	}
	// trixie's packages install modules under usr/lib/modules; a
	// merged-/usr system reaches them through lib -> usr/lib, and so
	// do depmod and the rest of the harness.
	if _, err := os.Lstat(filepath.Join(tmp, "lib")); os.IsNotExist(err) {
		if _, err := os.Stat(filepath.Join(tmp, "usr", "lib", "modules")); err == nil {
			if err := os.Symlink("usr/lib", filepath.Join(tmp, "lib")); err != nil {
				return err
			}
		}
	}
	t := NewKernel(tmp, k.ABI, k.Release, k.Version)

	// The image ships absolute build and source links; point them into
	// the tree so they resolve wherever the tree is.
	realModules, err := filepath.EvalSymlinks(t.ModulesDir)
	if err != nil {
		return fmt.Errorf("no modules directory for %s: %w", k.Release, err)
	}
	for name, target := range map[string]string{"build": t.HeadersDir, "source": t.CommonHeadersDir} {
		link := filepath.Join(realModules, name)
		if _, err := os.Lstat(link); err == nil {
			rel, err := filepath.Rel(realModules, target)
			if err != nil {
				return err
			}
			if err := os.Remove(link); err != nil {
				return err
			}
			if err := os.Symlink(rel, link); err != nil {
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
	logf("debian: kernel %s (%s) ready in %s", k.Release, k.Version, k.Root)
	return nil
}

// EnsureVmlinux writes k.Vmlinux, the uncompressed ELF of k.Vmlinuz,
// unless it is there already.
func EnsureVmlinux(k *Kernel, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return ensureVmlinux(k, logf)
}

func ensureVmlinux(k *Kernel, logf func(string, ...any)) error {
	if _, err := os.Stat(k.Vmlinux); err == nil {
		return nil
	}
	logf("debian: decompressing %s", filepath.Base(k.Vmlinuz))
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
