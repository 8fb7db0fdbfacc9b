// Package kbuild builds an out-of-tree livepatch module with kbuild against
// a distribution kernel's extracted headers, as Debian ships them: an arch
// headers directory whose Makefile includes a common one by absolute path.
package kbuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Headers locates the two halves of a kernel's headers.
type Headers struct {
	Dir    string // arch headers, e.g. .../linux-headers-6.1.0-56-amd64
	Common string // the directory its Makefile includes, e.g. .../linux-headers-6.1.0-56-common
}

var includeLine = regexp.MustCompile(`(?m)^include\s+(\S+)/Makefile\s*$`)

// FindHeaders resolves dir: an arch headers directory, or a tree (an
// extracted package root) holding exactly one under usr/src.
func FindHeaders(dir string) (Headers, error) {
	if _, err := os.Stat(filepath.Join(dir, "Makefile")); err != nil {
		cands, _ := filepath.Glob(filepath.Join(dir, "usr/src/linux-headers-*"))
		var arch []string
		for _, c := range cands {
			if !strings.HasSuffix(c, "-common") {
				arch = append(arch, c)
			}
		}
		if len(arch) != 1 {
			return Headers{}, fmt.Errorf("headers: %s has no Makefile and %d header trees under usr/src", dir, len(arch))
		}
		dir = arch[0]
	}
	mk, err := os.ReadFile(filepath.Join(dir, "Makefile"))
	if err != nil {
		return Headers{}, fmt.Errorf("headers: %w", err)
	}
	h := Headers{Dir: dir}
	if m := includeLine.FindSubmatch(mk); m != nil {
		// The include names an absolute path where the package installs;
		// here it is extracted beside dir.
		common := filepath.Join(filepath.Dir(dir), filepath.Base(string(m[1])))
		if _, err := os.Stat(filepath.Join(common, "Makefile")); err != nil {
			if _, err2 := os.Stat(filepath.Join(string(m[1]), "Makefile")); err2 != nil {
				return Headers{}, fmt.Errorf("headers: %s includes %s, found neither it nor %s", dir, m[1], common)
			}
			common = string(m[1])
		}
		h.Common = common
	}
	return h, nil
}

// Options of one build.
type Options struct {
	Headers Headers
	Src     string   // directory of .c and .h files; may be empty when Parts are given
	Name    string   // module name, e.g. kcare_l2
	Defines []string // NAME or NAME=VALUE, passed as -D
	Out     string   // where to write NAME.ko
	Log     io.Writer
	// Files are written into the build directory beside the sources,
	// by path relative to it: headers the sources include, such as
	// kcare/klp.h.
	Files map[string][]byte
	// Chroot, when set, is a build root (a Debian system made with
	// debootstrap, as root) whose compiler and tools build the module:
	// make runs chrooted there, with the headers' tree and the build
	// directory bound into it, in a mount namespace of its own.
	Chroot string
	// Parts are more source directories built into the same module,
	// each copied into its own subdirectory (part1, part2, ...) and
	// compiled with its own defines besides Defines.
	Parts []Part
	// AllowUndefined has modpost warn about, rather than refuse, symbols
	// the kernel does not export (KBUILD_MODPOST_WARN=1), for a caller
	// that turns them into livepatch relocations afterwards.
	AllowUndefined bool
}

// Part is one source directory of a module built from several.
type Part struct {
	Src     string
	Defines []string
}

var validName = regexp.MustCompile(`^[a-z0-9_]{1,55}$`)
var validDefine = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_.+-]*)?$`)

// Build copies the sources into a temporary directory, writes a Kbuild
// file naming the module, runs make there and copies the .ko to Out.
func Build(ctx context.Context, o Options) error {
	if !validName.MatchString(o.Name) {
		return fmt.Errorf("build: bad module name %q (lower-case letters, digits, _)", o.Name)
	}
	for _, d := range o.Defines {
		if !validDefine.MatchString(d) {
			return fmt.Errorf("build: bad define %q", d)
		}
	}
	for _, p := range o.Parts {
		for _, d := range p.Defines {
			if !validDefine.MatchString(d) {
				return fmt.Errorf("build: bad define %q", d)
			}
		}
	}
	tmp, err := os.MkdirTemp("", "kcare-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var objs []string
	if o.Src != "" {
		if objs, err = copySources(o.Src, tmp); err != nil {
			return err
		}
		if len(objs) == 0 {
			return fmt.Errorf("build: no .c files in %s", o.Src)
		}
	}
	// partFlags are the per-object flags of the parts' objects.
	var partFlags []string
	for i, p := range o.Parts {
		dir := fmt.Sprintf("part%d", i+1)
		if err := os.Mkdir(filepath.Join(tmp, dir), 0o755); err != nil {
			return err
		}
		pobjs, err := copySources(p.Src, filepath.Join(tmp, dir))
		if err != nil {
			return err
		}
		if len(pobjs) == 0 {
			return fmt.Errorf("build: no .c files in %s", p.Src)
		}
		for _, obj := range pobjs {
			obj = dir + "/" + obj
			objs = append(objs, obj)
			for _, d := range p.Defines {
				partFlags = append(partFlags, fmt.Sprintf("CFLAGS_%s += -D%s", obj, d))
			}
		}
	}
	for rel, data := range o.Files {
		p := filepath.Join(tmp, filepath.FromSlash(rel))
		if !filepath.IsLocal(rel) || (strings.HasSuffix(rel, ".c") && strings.Contains(rel, "/")) {
			return fmt.Errorf("build: bad extra file %q", rel)
		}
		if strings.HasSuffix(rel, ".c") {
			objs = append(objs, strings.TrimSuffix(rel, ".c")+".o")
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	for _, obj := range objs {
		if obj == o.Name+".o" && len(objs) > 1 {
			return fmt.Errorf("build: source %s.c has the module's name; rename it", o.Name)
		}
	}
	if len(objs) == 0 {
		return errors.New("build: no sources")
	}
	sort.Strings(objs)
	var kb bytes.Buffer
	fmt.Fprintf(&kb, "obj-m := %s.o\n", o.Name)
	if !(len(objs) == 1 && objs[0] == o.Name+".o") {
		fmt.Fprintf(&kb, "%s-y := %s\n", o.Name, strings.Join(objs, " "))
	}
	for _, d := range o.Defines {
		fmt.Fprintf(&kb, "ccflags-y += -D%s\n", d)
	}
	if len(o.Parts) > 0 {
		// The parts include headers of the build directory's top.
		kb.WriteString("ccflags-y += -I$(src)\n")
	}
	for _, f := range partFlags {
		kb.WriteString(f + "\n")
	}
	if err := os.WriteFile(filepath.Join(tmp, "Kbuild"), kb.Bytes(), 0o644); err != nil {
		return err
	}
	var env []string
	if o.AllowUndefined {
		env = append(env, "KBUILD_MODPOST_WARN=1")
	}
	var cmd *exec.Cmd
	if o.Chroot == "" {
		args := []string{"-C", o.Headers.Dir}
		if o.Headers.Common != "" {
			args = append(args, "-f", filepath.Join(o.Headers.Common, "Makefile"))
		}
		args = append(args, "M="+tmp, "modules")
		cmd = exec.CommandContext(ctx, "make", args...)
		cmd.Env = append(os.Environ(), env...)
	} else if cmd, err = chrootMake(ctx, o, tmp, env); err != nil {
		return err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if o.Log != nil {
		cmd.Stdout = io.MultiWriter(&out, o.Log)
		cmd.Stderr = cmd.Stdout
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: make: %w\n%s", o.Name, err, tail(out.String(), 30))
	}
	ko, err := os.ReadFile(filepath.Join(tmp, o.Name+".ko"))
	if err != nil {
		return fmt.Errorf("build %s: no module produced: %w", o.Name, err)
	}
	if err := os.WriteFile(o.Out, ko, 0o644); err != nil {
		return fmt.Errorf("build %s: %w", o.Name, err)
	}
	return nil
}

func copySources(src, dst string) ([]string, error) {
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil, fmt.Errorf("build: read sources: %w", err)
	}
	var objs []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".c") || strings.HasSuffix(n, ".h")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dst, n), b, 0o644); err != nil {
			return nil, err
		}
		if strings.HasSuffix(n, ".c") {
			objs = append(objs, strings.TrimSuffix(n, ".c")+".o")
		}
	}
	sort.Strings(objs)
	return objs, nil
}

func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ErrNoHeaders is returned when no headers directory was given.
var ErrNoHeaders = errors.New("no kernel headers given")

// chrootMake returns the command that runs make for o in o.Chroot: the
// tree holding the headers (the usr directory above usr/src, where the
// headers' links to kbuild lead) and the build directory are bound under
// /kcare in the root, in a private mount namespace that ends with it.
func chrootMake(ctx context.Context, o Options, build string, env []string) (*exec.Cmd, error) {
	root, err := filepath.Abs(o.Chroot)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, "usr", "bin", "make")); err != nil {
		return nil, fmt.Errorf("build: %s is no build root: %w", root, err)
	}
	binds := map[string]string{build: "/kcare/build"} // host -> inside
	inside := func(p string) (string, error) {
		p, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		for host, in := range binds {
			if rel, err := filepath.Rel(host, p); err == nil && filepath.IsLocal(rel) {
				return filepath.Join(in, rel), nil
			}
		}
		top := filepath.Dir(filepath.Dir(p))
		in := fmt.Sprintf("/kcare/tree%d", len(binds))
		binds[top] = in
		rel, _ := filepath.Rel(top, p)
		return filepath.Join(in, rel), nil
	}
	headers, err := inside(o.Headers.Dir)
	if err != nil {
		return nil, err
	}
	args := []string{"make", "-C", headers}
	if o.Headers.Common != "" {
		common, err := inside(o.Headers.Common)
		if err != nil {
			return nil, err
		}
		args = append(args, "-f", filepath.Join(common, "Makefile"))
	}
	args = append(args, "M=/kcare/build", "modules")

	var sh strings.Builder
	sh.WriteString("set -e\n")
	hosts := make([]string, 0, len(binds))
	for h := range binds {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		in := root + binds[h]
		fmt.Fprintf(&sh, "mkdir -p %s\nmount --bind %s %s\n", shellQuote(in), shellQuote(h), shellQuote(in))
	}
	fmt.Fprintf(&sh, "mount --rbind /dev %s\nmount -t proc proc %s\n", shellQuote(root+"/dev"), shellQuote(root+"/proc"))
	fmt.Fprintf(&sh, "exec chroot %s /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8", shellQuote(root))
	for _, e := range env {
		sh.WriteString(" " + shellQuote(e))
	}
	for _, a := range args {
		sh.WriteString(" " + shellQuote(a))
	}
	sh.WriteString("\n")
	return exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", sh.String()), nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
