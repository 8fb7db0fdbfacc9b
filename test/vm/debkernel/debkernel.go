// Package debkernel gives the test harness its Debian kernels: the one the
// suite targets, or any release of the families internal/debian knows,
// each fetched once into the test cache (KCARE_TEST_CACHE).
//
// The kernel the suite targets is $KCARE_TEST_KERNEL when set (a release,
// "6.12.118+deb13-amd64", or a family, "trixie-6.12", for its newest
// kernel; `make vmtest KERNEL=…` sets it), otherwise the kernel the host's
// linux-image-amd64 depends on today.
package debkernel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kcare/kcare/internal/debian"
)

// Kernel is an extracted Debian kernel: image, modules, headers and kbuild.
type Kernel = debian.Kernel

// DefaultCacheDir returns $KCARE_TEST_CACHE, or /var/cache/kcare-test.
func DefaultCacheDir() string {
	if d := os.Getenv("KCARE_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/kcare-test"
}

var (
	archivesMu sync.Mutex
	archives   = map[string]*debian.Archive{}
)

// Archive returns the harness's private apt under cacheDir/apt, one per
// process, so its package lists are fetched once.
func Archive(cacheDir string, logf func(format string, args ...any)) (*debian.Archive, error) {
	archivesMu.Lock()
	defer archivesMu.Unlock()
	if a, ok := archives[cacheDir]; ok {
		return a, nil
	}
	a, err := debian.OpenArchive(debian.ArchiveOptions{Dir: filepath.Join(cacheDir, "apt"), Logf: logf})
	if err != nil {
		return nil, err
	}
	archives[cacheDir] = a
	return a, nil
}

// Catalog lists the complete kernel sets the archive serves.
func Catalog(ctx context.Context, cacheDir string, logf func(format string, args ...any)) (*debian.Catalog, error) {
	a, err := Archive(cacheDir, logf)
	if err != nil {
		return nil, err
	}
	return a.Catalog(ctx)
}

// FetchRelease returns the Debian kernel release ("6.1.0-47-amd64"), with
// its headers and kbuild, from any suite of the families, downloading and
// extracting it into cacheDir unless a complete tree is already there.
func FetchRelease(ctx context.Context, cacheDir, release string, logf func(format string, args ...any)) (*Kernel, error) {
	a, err := Archive(cacheDir, logf)
	if err != nil {
		return nil, fmt.Errorf("fetch debian kernel %s: %w", release, err)
	}
	return debian.FetchKernel(ctx, a, cacheDir, release, logf)
}

// FetchFamily returns the newest kernel of a family ("trixie-6.12") the
// archive serves complete. Offline, it falls back on the newest of the
// family in the cache.
func FetchFamily(ctx context.Context, cacheDir, family string, logf func(format string, args ...any)) (*Kernel, error) {
	if _, ok := debian.FamilyNamed(family); !ok {
		return nil, fmt.Errorf("no kernel family %q (families: %s)", family, strings.Join(debian.FamilyNames(), ", "))
	}
	c, err := Catalog(ctx, cacheDir, logf)
	if err != nil {
		if k, ok := debian.NewestCached(cacheDir, family); ok {
			if logf != nil {
				logf("debkernel: %v; using the cached kernel %s (%s)", err, k.Release, k.Version)
			}
			return k, debian.EnsureVmlinux(k, logf)
		}
		return nil, err
	}
	s, ok := c.Newest(family)
	if !ok {
		return nil, fmt.Errorf("the archive serves no complete %s kernel", family)
	}
	return FetchRelease(ctx, cacheDir, s.Release, logf)
}

// Fetch returns the kernel the suite targets: $KCARE_TEST_KERNEL, a
// release or a family, when set; otherwise the Debian kernel the host's
// linux-image-amd64 depends on today. When apt cannot tell which that is
// (no package lists and no network), the newest bookworm-6.1 kernel in
// the cache.
func Fetch(ctx context.Context, cacheDir string, logf func(format string, args ...any)) (*Kernel, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if want := os.Getenv("KCARE_TEST_KERNEL"); want != "" {
		if _, ok := debian.FamilyNamed(want); ok {
			return FetchFamily(ctx, cacheDir, want, logf)
		}
		return FetchRelease(ctx, cacheDir, want, logf)
	}
	release, err := currentRelease(ctx, logf)
	if err != nil {
		if k, ok := debian.NewestCached(cacheDir, "bookworm-6.1"); ok {
			logf("debkernel: %v; using the cached kernel %s (%s)", err, k.Release, k.Version)
			return k, debian.EnsureVmlinux(k, logf)
		}
		return nil, fmt.Errorf("fetch debian kernel: %w", err)
	}
	return FetchRelease(ctx, cacheDir, release, logf)
}

// currentRelease returns the kernel release the host's linux-image-amd64
// depends on, running `apt-get update` once if apt knows no such package.
func currentRelease(ctx context.Context, logf func(string, ...any)) (string, error) {
	out, err := run(ctx, "apt-cache", "depends", "linux-image-amd64")
	if err == nil {
		if r, ok := parseImageDepends(out); ok {
			return r, nil
		}
	}
	logf("debkernel: apt knows no linux-image-amd64; running apt-get update")
	if _, err := run(ctx, "apt-get", "update"); err != nil {
		return "", err
	}
	out, err = run(ctx, "apt-cache", "depends", "linux-image-amd64")
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

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
