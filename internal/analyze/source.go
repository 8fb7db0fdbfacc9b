package analyze

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
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
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

var releasePattern = regexp.MustCompile(`^([0-9]+\.[0-9]+)\.[0-9]+-[0-9]+-[a-z0-9]+$`)

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
	unlock, err := lockFile(ctx, filepath.Join(o.Cache, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("prepare source: %w", err)
	}
	defer unlock()

	root := filepath.Join(o.Cache, "trees", release)
	if s, err := readMarker(root); err == nil {
		return s, nil
	}

	apt, err := newApt(ctx, filepath.Join(o.Cache, "apt"), o.AptEtc, o.Logf)
	if err != nil {
		return nil, fmt.Errorf("prepare source: %w", err)
	}
	headersPkg := "linux-headers-" + release
	version, err := apt.version(ctx, headersPkg)
	if err != nil {
		return nil, fmt.Errorf("prepare source for %s: %w", release, err)
	}
	debDir := filepath.Join(o.Cache, "deb")
	headersDeb, err := apt.download(ctx, debDir, headersPkg, version)
	if err != nil {
		return nil, fmt.Errorf("prepare source for %s: %w", release, err)
	}
	sourcePkg := "linux-source-" + series
	sourceDeb, err := apt.download(ctx, debDir, sourcePkg, version)
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

// apt runs apt-get and apt-cache with a private configuration: its own
// package lists and cache under the analyze cache, the host's sources.
// The host's own apt state is never touched.
type apt struct {
	dir  string
	env  []string
	logf func(string, ...any)
}

func newApt(ctx context.Context, dir, hostEtc string, logf func(string, ...any)) (*apt, error) {
	for _, d := range []string{"etc/sources.list.d", "etc/preferences.d", "lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// The host's sources, as they are: the same mirrors and keys.
	var sources []string
	if _, err := os.Stat(filepath.Join(hostEtc, "sources.list")); err == nil {
		sources = append(sources, filepath.Join(hostEtc, "sources.list"))
	}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(hostEtc, "sources.list.d", pat))
		sources = append(sources, m...)
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("apt: no sources in %s", hostEtc)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "etc", "sources.list.d", "*"))
	for _, f := range old {
		os.Remove(f)
	}
	for _, src := range sources {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "etc", "sources.list.d", filepath.Base(src)), data, 0o644); err != nil {
			return nil, err
		}
	}
	conf := fmt.Sprintf(`Dir::Etc::sourcelist "/dev/null";
Dir::Etc::sourceparts "%[1]s/etc/sources.list.d";
Dir::Etc::preferencesparts "%[1]s/etc/preferences.d";
Dir::Etc::trusted "%[2]s/trusted.gpg";
Dir::Etc::trustedparts "%[2]s/trusted.gpg.d";
Dir::State::lists "%[1]s/lists";
Dir::Cache "%[1]s/cache";
Dir::Cache::archives "%[1]s/cache/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Sandbox::User "root";
Acquire::Languages "none";
`, dir, hostEtc)
	if err := os.WriteFile(filepath.Join(dir, "apt.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	a := &apt{dir: dir, env: append(os.Environ(), "APT_CONFIG="+filepath.Join(dir, "apt.conf"), "LC_ALL=C"), logf: logf}
	return a, nil
}

func (a *apt) run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = a.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// version returns the archive's version of pkg, updating the private
// package lists once when they do not know it.
func (a *apt) version(ctx context.Context, pkg string) (string, error) {
	for attempt := 0; ; attempt++ {
		out, err := a.run(ctx, "", "apt-cache", "show", "--no-all-versions", pkg)
		if err == nil {
			if v := showField(out, "Version"); v != "" {
				return v, nil
			}
		}
		if attempt > 0 {
			return "", fmt.Errorf("%w: apt knows no %s", ErrNoSuchKernel, pkg)
		}
		start := time.Now()
		if _, err := a.run(ctx, "", "apt-get", "update", "-q"); err != nil {
			return "", err
		}
		a.logf("analyze: apt-get update (private lists in %s): %s", a.dir, time.Since(start).Round(time.Millisecond))
	}
}

// showField returns the first value of field in apt-cache show output.
func showField(out []byte, field string) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// download returns the path of pkg=version's .deb in debDir, fetching it
// unless it is there.
func (a *apt) download(ctx context.Context, debDir, pkg, version string) (string, error) {
	name := pkg + "_" + strings.ReplaceAll(version, ":", "%3a")
	for _, arch := range []string{"amd64", "all"} {
		p := filepath.Join(debDir, name+"_"+arch+".deb")
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
	start := time.Now()
	if _, err := a.run(ctx, tmp, "apt-get", "download", "-q", pkg+"="+version); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoSuchKernel, err)
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
		a.logf("analyze: downloaded %s (%d MiB) in %s", filepath.Base(dst), fi.Size()>>20, time.Since(start).Round(time.Millisecond))
	}
	return dst, nil
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

// lockFile takes an exclusive lock on path; it gives up when ctx is done.
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
		go func() { <-done; f.Close() }()
		return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
	}
}
