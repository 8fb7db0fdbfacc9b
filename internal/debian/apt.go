package debian

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
	"time"

	"github.com/kcare/kcare/internal/flock"
)

// Archive is Debian's archive seen through a private apt: its lists and
// download cache live in Dir, its sources name every family's suites on
// the host's mirrors.
type Archive struct {
	Dir     string
	Mirrors Mirrors
	// Missing are suites the archive cannot reach: security suites when
	// the host names no security archive.
	Missing []string

	env  []string
	logf func(string, ...any)

	updateOnce sync.Once
	updateErr  error
}

// ArchiveOptions says where the private apt lives and what it reads.
type ArchiveOptions struct {
	// Dir holds the private apt's configuration, lists and cache.
	Dir string
	// AptEtc is where the host's apt sources and keyrings are read
	// from; /etc/apt when empty.
	AptEtc string
	// Logf is told what apt does and how long it took; nil for none.
	Logf func(format string, args ...any)
}

// Suites are the suites the private apt reads: each family's release with
// its updates, security and backports suites.
func Suites() []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range Families {
		for _, s := range []string{"", "-updates", "-security", "-backports"} {
			if !seen[f.Codename+s] {
				seen[f.Codename+s] = true
				out = append(out, f.Codename+s)
			}
		}
	}
	return out
}

// OpenArchive writes the private apt's configuration under o.Dir. The
// package lists are fetched by the first query (Update).
func OpenArchive(o ArchiveOptions) (*Archive, error) {
	if o.AptEtc == "" {
		o.AptEtc = "/etc/apt"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	m, err := ReadMirrors(o.AptEtc)
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	for _, d := range []string{"etc/sources.list.d", "etc/preferences.d", "lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	sources, missing := sourcesFile(m, Suites())
	// Only these sources: a directory an older layout filled with copies
	// of the host's files is emptied first.
	old, _ := filepath.Glob(filepath.Join(dir, "etc", "sources.list.d", "*"))
	for _, f := range old {
		if filepath.Base(f) != "kcare.sources" {
			os.Remove(f)
		}
	}
	if err := writeIfChanged(filepath.Join(dir, "etc", "sources.list.d", "kcare.sources"), []byte(sources)); err != nil {
		return nil, err
	}
	// The host's apt.conf.d is still read (a site's proxy settings);
	// this file names the private state and the host's keyrings.
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
`, dir, o.AptEtc)
	if err := writeIfChanged(filepath.Join(dir, "apt.conf"), []byte(conf)); err != nil {
		return nil, err
	}
	return &Archive{
		Dir:     dir,
		Mirrors: m,
		Missing: missing,
		env:     append(os.Environ(), "APT_CONFIG="+filepath.Join(dir, "apt.conf"), "LC_ALL=C"),
		logf:    o.Logf,
	}, nil
}

func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(path, data, 0o644)
}

// Update fetches the package lists, once per Archive. When the archive
// cannot be reached and lists from an earlier run are there, those are
// used, with a warning.
func (a *Archive) Update(ctx context.Context) error {
	a.updateOnce.Do(func() {
		start := time.Now()
		if _, err := a.run(ctx, "", "apt-get", "update", "-q"); err != nil {
			if a.hasLists() {
				a.logf("debian: apt-get update failed; using the package lists of an earlier run: %v", err)
				return
			}
			a.updateErr = err
			return
		}
		a.logf("debian: apt-get update (%s): %s", strings.Join(Suites(), " "), time.Since(start).Round(time.Millisecond))
	})
	return a.updateErr
}

func (a *Archive) hasLists() bool {
	m, _ := filepath.Glob(filepath.Join(a.Dir, "lists", "*_Packages*"))
	return len(m) > 0
}

// run runs an apt command with the private configuration, holding the
// archive's lock: test binaries running in parallel share one archive.
func (a *Archive) run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	unlock, err := flock.Path(ctx, filepath.Join(a.Dir, ".lock"), 0o666, flock.Forever)
	if err != nil {
		return nil, err
	}
	defer unlock()
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

// pkgNames lists the package names apt knows that start with prefix.
func (a *Archive) pkgNames(ctx context.Context, prefix string) ([]string, error) {
	if err := a.Update(ctx); err != nil {
		return nil, err
	}
	out, err := a.run(ctx, "", "apt-cache", "pkgnames", prefix)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// Package is what the archive says of one package.
type Package struct {
	Name    string
	Version string   // the candidate: the highest version served
	Depends []string // package names; of alternatives, the first
}

// Show returns the candidate version and dependencies of each package the
// archive serves, asking apt once. A package it does not serve is absent
// from the map.
func (a *Archive) Show(ctx context.Context, pkgs ...string) (map[string]Package, error) {
	if err := a.Update(ctx); err != nil {
		return nil, err
	}
	out, err := a.run(ctx, "", append([]string{"apt-cache", "show", "--no-all-versions"}, pkgs...)...)
	if err != nil {
		// apt-cache shows the packages it knows and fails only when
		// it knows none of them.
		if strings.Contains(err.Error(), "No packages found") {
			return map[string]Package{}, nil
		}
		return nil, err
	}
	return parseShow(out), nil
}

// parseShow parses `apt-cache show` output: Package, Version and Depends
// of each stanza. The first stanza of a package wins.
func parseShow(out []byte) map[string]Package {
	infos := make(map[string]Package)
	var p Package
	flush := func() {
		if _, dup := infos[p.Name]; p.Name != "" && !dup {
			infos[p.Name] = p
		}
		p = Package{}
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
			if p.Name != "" {
				flush()
			}
			p.Name = value
		case "Version":
			p.Version = value
		case "Depends":
			for _, d := range strings.Split(value, ",") {
				alt, _, _ := strings.Cut(d, "|")
				if name := strings.Fields(alt); len(name) > 0 {
					p.Depends = append(p.Depends, name[0])
				}
			}
		}
	}
	flush()
	return infos
}

// ErrNotServed means the archive does not serve a package (any more).
var ErrNotServed = errors.New("not served by the archive")

// debFileName is the name apt-get download gives a package's file: the
// epoch colon, if any, is escaped.
func debFileName(pkg, version, arch string) string {
	return pkg + "_" + strings.ReplaceAll(version, ":", "%3a") + "_" + arch + ".deb"
}

// Download returns the path of pkg=version's .deb in debDir, fetching it
// unless it is there already.
func (a *Archive) Download(ctx context.Context, debDir, pkg, version string) (string, error) {
	for _, arch := range []string{"amd64", "all"} {
		p := filepath.Join(debDir, debFileName(pkg, version, arch))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if err := a.Update(ctx); err != nil {
		return "", err
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
	start := time.Now()
	if _, err := a.run(ctx, tmp, "apt-get", "download", "-q", pkg+"="+version); err != nil {
		return "", fmt.Errorf("%s=%s: %w: %v", pkg, version, ErrNotServed, err)
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
		a.logf("debian: downloaded %s (%d MiB) in %s", filepath.Base(dst), fi.Size()>>20, time.Since(start).Round(time.Millisecond))
	}
	return dst, nil
}
