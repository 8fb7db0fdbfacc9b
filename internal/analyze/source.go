package analyze

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/debian"
	"github.com/kcare/kcare/internal/flock"
)

// Source is a Debian kernel's source tree, configured with that kernel's
// own config and prepared (make modules_prepare) so that single objects
// build: one per release, kept in the cache.
type Source struct {
	Release string // "6.1.0-47-amd64"
	Version string // the Debian package version, "6.1.170-3"
	Dir     string // the tree
	CC      string // the compiler, as the kernel was built: "gcc-12"
}

// SourceOptions says where Prepare keeps what it fetches.
type SourceOptions struct {
	// Cache is the cache directory: apt's private state, the
	// downloaded packages and the prepared trees live under it.
	Cache string
	// AptEtc is where the host's apt sources are read from (the
	// private apt uses the same mirrors); /etc/apt when empty.
	AptEtc string
	// Logf is told each step and how long it took; nil for none.
	Logf func(format string, args ...any)
}

// markerName is written last into a prepared tree; its name carries the
// layout version.
const markerName = ".kcare-analyze-v1.json"

// ErrNoSuchKernel means the archive does not serve the release asked for.
var ErrNoSuchKernel = errors.New("no such kernel in the archive")

// releasePattern matches a Debian kernel release and its series:
// 6.1.0-47-amd64 (6.1), 6.12.118+deb13-amd64 (6.12).
var releasePattern = regexp.MustCompile(`^([0-9]+\.[0-9]+)\.[0-9]+(?:-[0-9]+|\+deb[0-9]+(?:\.[0-9]+)?)-[a-z0-9]+$`)

// Prepare returns the prepared source tree of a Debian kernel release,
// fetching and preparing it unless the cache has it. It holds the cache's
// lock while it works, so concurrent callers wait for one another.
func Prepare(ctx context.Context, release string, o SourceOptions) (*Source, error) {
	m := releasePattern.FindStringSubmatch(release)
	if m == nil {
		return nil, fmt.Errorf("prepare source: %q is not a Debian kernel release such as 6.1.0-47-amd64", release)
	}
	series := m[1]
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.AptEtc == "" {
		o.AptEtc = "/etc/apt"
	}
	if err := os.MkdirAll(filepath.Join(o.Cache, "trees"), 0o755); err != nil {
		return nil, fmt.Errorf("prepare source: %w", err)
	}
	unlock, err := flock.Path(ctx, filepath.Join(o.Cache, ".lock"), 0o666, flock.Forever)
	if err != nil {
		return nil, fmt.Errorf("prepare source: %w", err)
	}
	defer unlock()

	root := filepath.Join(o.Cache, "trees", release)
	if s, err := readMarker(root); err == nil {
		return s, nil
	}

	// The archive of every kernel family, on the host's mirrors.
	apt, err := debian.OpenArchive(debian.ArchiveOptions{Dir: filepath.Join(o.Cache, "apt"), AptEtc: o.AptEtc, Logf: o.Logf})
	if err != nil {
		return nil, fmt.Errorf("prepare source: %w", err)
	}
	headersPkg := "linux-headers-" + release
	pkgs, err := apt.Show(ctx, headersPkg)
	if err != nil {
		return nil, fmt.Errorf("prepare source for %s: %w", release, err)
	}
	version := pkgs[headersPkg].Version
	if version == "" {
		return nil, fmt.Errorf("prepare source for %s: %w: apt knows no %s", release, ErrNoSuchKernel, headersPkg)
	}
	debDir := filepath.Join(o.Cache, "deb")
	download := func(pkg string) (string, error) {
		p, err := apt.Download(ctx, debDir, pkg, version)
		if errors.Is(err, debian.ErrNotServed) {
			return "", fmt.Errorf("%w: %v", ErrNoSuchKernel, err)
		}
		return p, err
	}
	headersDeb, err := download(headersPkg)
	if err != nil {
		return nil, fmt.Errorf("prepare source for %s: %w", release, err)
	}
	sourcePkg := "linux-source-" + series
	sourceDeb, err := download(sourcePkg)
	if err != nil {
		return nil, fmt.Errorf("prepare source for %s: %w", release, err)
	}

	// The tree is prepared where it stays (kbuild's output names its
	// place); the marker, written last, says it is complete, and a tree
	// without one is made again.
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	tmp := root
	step := func(what string, f func() error) error {
		start := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("prepare source for %s: %s: %w", release, what, err)
		}
		o.Logf("analyze: %s: %s", what, time.Since(start).Round(time.Millisecond))
		return nil
	}
	if err := step("unpack "+filepath.Base(sourceDeb), func() error {
		_, err := run(ctx, "", "sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xOf - "$2" | tar -xJf - -C "$3"`,
			"sh", sourceDeb, "./usr/src/linux-source-"+series+".tar.xz", tmp)
		return err
	}); err != nil {
		return nil, err
	}
	tree := filepath.Join(tmp, "linux-source-"+series)
	var config []byte
	if err := step("read the config of "+filepath.Base(headersDeb), func() error {
		var err error
		config, err = run(ctx, "", "sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xOf - "$2"`,
			"sh", headersDeb, "./usr/src/linux-headers-"+release+"/.config")
		return err
	}); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tree, ".config"), config, 0o644); err != nil {
		return nil, err
	}
	cc := kernelCC(config, o.Logf)
	jobs := "-j" + strconv.Itoa(runtime.NumCPU())
	if err := step("make olddefconfig", func() error {
		_, err := run(ctx, tree, "make", "CC="+cc, "olddefconfig")
		return err
	}); err != nil {
		return nil, err
	}
	if err := step("make modules_prepare", func() error {
		_, err := run(ctx, tree, "make", jobs, "CC="+cc, "modules_prepare")
		return err
	}); err != nil {
		return nil, err
	}
	s := &Source{Release: release, Version: version, Dir: filepath.Join(root, "linux-source-"+series), CC: cc}
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, markerName), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	o.Logf("analyze: %s (%s) prepared in %s", release, version, root)
	return s, nil
}

func readMarker(root string) (*Source, error) {
	data, err := os.ReadFile(filepath.Join(root, markerName))
	if err != nil {
		return nil, err
	}
	var s Source
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	if s.Release == "" || s.Dir == "" {
		return nil, errors.New("incomplete marker")
	}
	s.Dir = filepath.Join(root, filepath.Base(s.Dir))
	return &s, nil
}

// kernelCC is the compiler the kernel was built with, from its config
// (CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"),
// when this host has it; otherwise gcc, with a warning: another compiler
// makes other code, and the analysis may list functions that differ only
// because of it.
func kernelCC(config []byte, logf func(string, ...any)) string {
	m := regexp.MustCompile(`(?m)^CONFIG_CC_VERSION_TEXT="([^" ]+) [^"]*"`).FindSubmatch(config)
	if m != nil {
		want := string(m[1])
		if _, err := exec.LookPath(want); err == nil {
			return want
		}
		logf("analyze: warning: the kernel was built with %s, which this host lacks; using gcc", want)
	}
	return "gcc"
}

// run runs a command in dir and returns its stdout; the error carries
// the end of its output.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, lastLines(stderr.String()+stdout.String(), 30))
	}
	return stdout.Bytes(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
