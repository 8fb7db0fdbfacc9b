package debian

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/flock"
)

// Compiler is the compiler a kernel was built with, from its config's
// CONFIG_CC_VERSION_TEXT ("x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19)
// 14.2.0").
type Compiler struct {
	Command string // "x86_64-linux-gnu-gcc-14"
	Version string // the upstream version, "14.2.0"
	Text    string // the whole text
}

// Package is the Debian package of the compiler: "gcc-14".
func (c Compiler) Package() string {
	if i := strings.Index(c.Command, "gcc-"); i >= 0 {
		return c.Command[i:]
	}
	return "gcc"
}

var ccVersionText = regexp.MustCompile(`(?m)^CONFIG_CC_VERSION_TEXT="([^"]*)"`)

// ReadCompiler returns the compiler a kernel config names.
func ReadCompiler(config []byte) (Compiler, error) {
	m := ccVersionText.FindSubmatch(config)
	if m == nil {
		return Compiler{}, errors.New("the kernel config has no CONFIG_CC_VERSION_TEXT")
	}
	return ParseCompiler(string(m[1]))
}

// ParseCompiler parses a compiler's identification, as its first line of
// --version or CONFIG_CC_VERSION_TEXT: "gcc-12 (Debian 12.2.0-14+deb12u1)
// 12.2.0".
func ParseCompiler(text string) (Compiler, error) {
	text = strings.TrimSpace(text)
	f := strings.Fields(text)
	if len(f) < 2 || !strings.Contains(f[0], "gcc") {
		return Compiler{}, fmt.Errorf("not a GCC: %q", text)
	}
	v := f[len(f)-1]
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+)?$`).MatchString(v) {
		return Compiler{}, fmt.Errorf("no version in %q", text)
	}
	return Compiler{Command: f[0], Version: v, Text: text}, nil
}

// Releases maps each Debian release a family is built on to the compiler
// package its kernels are built with.
var Releases = map[string]string{
	"bookworm": "gcc-12",
	"trixie":   "gcc-14",
}

// ErrNoBuildRoot means no build root of a release is made.
var ErrNoBuildRoot = errors.New("no build root")

// BuildRoot is a Debian system made by debootstrap, whose compiler builds
// livepatches for kernels the host's compiler did not build.
type BuildRoot struct {
	Codename string        // "trixie"
	Dir      string        // the root
	Compiler Compiler      // its compiler, as --version says
	Size     int64         // bytes on disk
	Made     time.Time     // when it was made
	Took     time.Duration // how long debootstrap took
}

// buildRootMarker is written last into a complete build root.
const buildRootMarker = ".kcare-buildroot-v1.json"

type buildRootInfo struct {
	Codename string        `json:"codename"`
	Compiler string        `json:"compiler"`
	Made     time.Time     `json:"made"`
	Took     time.Duration `json:"took"`
	Mirror   string        `json:"mirror"`
}

// BuildRoots manages the build roots under Dir, one per Debian release.
type BuildRoots struct {
	Dir  string
	Logf func(format string, args ...any)
}

func (b *BuildRoots) logf(format string, args ...any) {
	if b.Logf != nil {
		b.Logf(format, args...)
	}
}

// Path is where the build root of codename lives.
func (b *BuildRoots) Path(codename string) string { return filepath.Join(b.Dir, codename) }

// Get returns the complete build root of codename, or ErrNoBuildRoot.
func (b *BuildRoots) Get(codename string) (*BuildRoot, error) {
	dir := b.Path(codename)
	data, err := os.ReadFile(filepath.Join(dir, buildRootMarker))
	if err != nil {
		return nil, fmt.Errorf("%w for %s in %s", ErrNoBuildRoot, codename, b.Dir)
	}
	var info buildRootInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("build root %s: %w", dir, err)
	}
	cc, err := ParseCompiler(info.Compiler)
	if err != nil {
		return nil, fmt.Errorf("build root %s: %w", dir, err)
	}
	return &BuildRoot{Codename: info.Codename, Dir: dir, Compiler: cc, Made: info.Made, Took: info.Took}, nil
}

// List returns the complete build roots, by codename, with their size.
func (b *BuildRoots) List() ([]*BuildRoot, error) {
	ents, err := os.ReadDir(b.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var out []*BuildRoot
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		r, err := b.Get(e.Name())
		if err != nil {
			continue
		}
		r.Size = diskUsage(r.Dir)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Codename < out[j].Codename })
	return out, nil
}

// Remove deletes the build root of codename.
func (b *BuildRoots) Remove(codename string) error {
	if _, ok := Releases[codename]; !ok {
		return fmt.Errorf("no Debian release %q (releases: %s)", codename, strings.Join(releaseNames(), ", "))
	}
	dir := b.Path(codename)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("%w for %s in %s", ErrNoBuildRoot, codename, b.Dir)
	}
	return os.RemoveAll(dir)
}

func releaseNames() []string {
	var out []string
	for r := range Releases {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Make makes the build root of codename with debootstrap from the
// archive's mirror (the host's), with the release's compiler, make,
// pahole and the libraries kbuild's tools link against, unless it is
// made already. It needs root.
func (b *BuildRoots) Make(ctx context.Context, a *Archive, codename string) (*BuildRoot, error) {
	gcc, ok := Releases[codename]
	if !ok {
		return nil, fmt.Errorf("make build root: no Debian release %q (releases: %s)", codename, strings.Join(releaseNames(), ", "))
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := flock.Path(ctx, filepath.Join(b.Dir, ".lock"), 0o666, flock.Forever)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if r, err := b.Get(codename); err == nil {
		return r, nil
	}
	debootstrap, err := lookPath("debootstrap")
	if err != nil {
		return nil, fmt.Errorf("make build root %s: %w (install debootstrap)", codename, err)
	}
	dir := b.Path(codename)
	tmp := dir + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	args := []string{"--variant=minbase", "--include=" + strings.Join([]string{gcc, "make", "libc6-dev", "libelf-dev", "libssl-dev", "dwarves"}, ",")}
	if k := a.Mirrors.Archive.SignedBy; k != "" && !strings.Contains(k, "\n") {
		args = append(args, "--keyring="+k)
	}
	args = append(args, codename, tmp, a.Mirrors.Archive.URI)
	b.logf("debian: debootstrap %s", strings.Join(args, " "))
	start := time.Now()
	if _, err := run(ctx, "", debootstrap, args...); err != nil {
		// debootstrap's own log says why.
		log, _ := os.ReadFile(filepath.Join(tmp, "debootstrap", "debootstrap.log"))
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("make build root %s: %w\n%s", codename, err, lastLines(string(log), 20))
	}
	took := time.Since(start)
	out, err := run(ctx, "", "chroot", tmp, "x86_64-linux-gnu-"+gcc, "--version")
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("make build root %s: %w", codename, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	cc, err := ParseCompiler(first)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("make build root %s: %w", codename, err)
	}
	info, err := json.Marshal(buildRootInfo{Codename: codename, Compiler: cc.Text, Made: time.Now().UTC().Truncate(time.Second), Took: took, Mirror: a.Mirrors.Archive.URI})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, buildRootMarker), append(info, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	r, err := b.Get(codename)
	if err != nil {
		return nil, err
	}
	r.Size = diskUsage(dir)
	b.logf("debian: build root %s (%s) made in %s, %d MiB", codename, cc.Text, took.Round(time.Second), r.Size>>20)
	return r, nil
}

// diskUsage sums the sizes of the regular files under dir.
func diskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader([]byte(s)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
