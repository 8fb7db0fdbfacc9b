package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/kcare/kcare/internal/debian"
	"github.com/kcare/kcare/internal/kbuild"
	"github.com/kcare/kcare/internal/klp"
	"github.com/kcare/kcare/internal/kmod"
)

func runModule(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("module", flag.ContinueOnError)
	headers := fs.String("headers", "", "kernel headers `DIR` (linux-headers-RELEASE, or an extracted package tree)")
	var srcs listFlag
	fs.Var(&srcs, "src", "source `DIR` of the livepatch (.c and .h files); repeated, the sources of a cumulative level, each ending with KCARE_LIVEPATCH (kcare/klp.h), built into one patch")
	out := fs.String("out", "", "write the module to `FILE`.ko")
	name := fs.String("name", "", "module `NAME` (default: the --out file name without .ko)")
	var defines listFlag
	fs.Var(&defines, "define", "pass -D`NAME[=VALUE]` to the compiler (repeatable)")
	kallsyms := fs.String("kallsyms", "", "the target kernel's /proc/kallsyms, read as root on a host running the same build, as `FILE`")
	systemMap := fs.String("system-map", "", "the target kernel's System.map `FILE` (from linux-image-RELEASE-dbg)")
	symvers := fs.String("symvers", "", "the kernel's exported symbols, Module.symvers `FILE` (default: the headers')")
	var objects, sympos listFlag
	fs.Var(&objects, "object", "a module the patch patches, `NAME[=FILE.ko]` (repeatable); its symbols come from FILE, --modules or --kallsyms")
	modules := fs.String("modules", "", "`DIR` of the target kernel's modules (/lib/modules/RELEASE) where --object finds NAME.ko")
	fs.Var(&sympos, "sympos", "which of several same-named symbols the patch means, `[OBJECT:]NAME=POS` counting from 1 in kallsyms order (repeatable)")
	verbose := fs.Bool("v", false, "show the kbuild output and every symbol resolved")
	cache := fs.String("cache", defaultCache(), "`DIR` of the build roots (DIR/buildroots): a kernel built with a compiler the host lacks is built in the build root of its Debian release, made there with debootstrap when missing")
	var against listFlag
	fs.Var(&against, "check-against", "refuse to write a module that does not replace every function the analysis `FILE` (kcare-build analyze --out) lists (repeatable: one per fix of a cumulative level)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := required("headers", *headers, "src", srcs.String(), "out", *out); err != nil {
		return err
	}
	if *kallsyms != "" && *systemMap != "" {
		return fmt.Errorf("%w: give --kallsyms or --system-map, not both", errUsage)
	}
	if *name == "" {
		*name = strings.TrimSuffix(filepath.Base(*out), ".ko")
	}
	var choices []klp.Sympos
	for _, s := range sympos {
		c, err := klp.ParseSympos(s, "--sympos")
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		choices = append(choices, c)
	}
	h, err := kbuild.FindHeaders(*headers)
	if err != nil {
		return err
	}
	opts, err := klpOptions(h, *symvers, *kallsyms, *systemMap, *modules, objects)
	if err != nil {
		return err
	}
	opts.Sympos = choices

	// The kernel's own compiler: the host's when it matches, otherwise
	// a build root's.
	release, err := headersRelease(h.Dir)
	if err != nil {
		return err
	}
	var roots *debian.BuildRoots
	var archive func() (*debian.Archive, error)
	if *cache != "" {
		roots = buildRoots(*cache, stderr)
		archive = func() (*debian.Archive, error) { return openArchive(*cache, stderr) }
	}
	tc, err := debian.ChooseToolchain(ctx, h.Dir, release, roots, archive)
	if err != nil {
		return err
	}
	if *verbose {
		fmt.Fprintf(stderr, "kcare-build: %s was built with %s; building with the %s\n", release, tc.Kernel.Text, tc)
	}

	tmp, err := os.MkdirTemp("", "kcare-module-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	built := filepath.Join(tmp, *name+".ko")
	o := kbuild.Options{
		Headers: h, Name: *name, Defines: defines, Out: built,
		Files:          map[string][]byte{klp.HeaderPath: klp.Header},
		AllowUndefined: true,
	}
	if tc.Root != nil {
		o.Chroot = tc.Root.Dir
	}
	if len(srcs) == 1 {
		o.Src = srcs[0]
	} else {
		// A cumulative level: each source a part, merged into one
		// patch by kcare_level.c.
		o.Files = klp.LevelFiles(len(srcs))
		for i, s := range srcs {
			o.Parts = append(o.Parts, kbuild.Part{Src: s, Defines: []string{klp.PartDefine(i + 1)}})
		}
	}
	if *verbose {
		o.Log = stderr
	}
	if err := kbuild.Build(ctx, o); err != nil {
		return err
	}
	ko, err := os.ReadFile(built)
	if err != nil {
		return err
	}
	if err := checkModuleCompiler(ko, tc.Kernel); err != nil {
		return fmt.Errorf("build %s: %w", *name, err)
	}
	res, err := klp.Convert(ko, opts)
	if err != nil {
		return fmt.Errorf("build %s: %w", *name, err)
	}
	if *verbose {
		for _, r := range res.Symbols {
			fmt.Fprintln(stderr, describeResolved(r))
		}
	}
	if len(against) > 0 {
		info, err := kmod.ReadInfo(res.Module)
		if err != nil {
			return fmt.Errorf("build %s: %w", *name, err)
		}
		if err := checkAgainst(against, res.Module, info.Release()); err != nil {
			return fmt.Errorf("build %s: %w", *name, err)
		}
	}
	if err := os.WriteFile(*out, res.Module, 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout, *out)
	return nil
}

// describeResolved is the -v line for one resolved symbol:
// "klp: saved_command_line -> vmlinux position 0, relocations .data 1".
func describeResolved(r klp.Resolved) string {
	var b strings.Builder
	fmt.Fprintf(&b, "klp: %s -> %s position %d", r.Name, r.Object, r.Pos)
	if r.Given != "" {
		fmt.Fprintf(&b, " (%s)", r.Given)
	}
	if r.Exported {
		fmt.Fprintf(&b, " (exported by %s, resolved when it loads)", r.Object)
	}
	keys := make([]string, 0, len(r.Relocs))
	for k := range r.Relocs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString(", relocations")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s %d", k, r.Relocs[k])
	}
	if len(keys) == 0 {
		b.WriteString(" none")
	}
	return b.String()
}

// klpOptions reads what klp.Convert resolves against: the exports, the
// symbol table of vmlinux and of each module object.
func klpOptions(h kbuild.Headers, symvers, kallsyms, systemMap, modulesDir string, objects []string) (klp.Options, error) {
	var opts klp.Options
	if symvers == "" {
		symvers = filepath.Join(h.Dir, "Module.symvers")
	}
	data, err := os.ReadFile(symvers)
	if err != nil {
		return opts, fmt.Errorf("exported symbols: %w", err)
	}
	if opts.Exports, err = klp.ParseSymvers(data, symvers); err != nil {
		return opts, err
	}
	opts.Tables = map[string]*klp.Table{}
	switch {
	case kallsyms != "":
		data, err := os.ReadFile(kallsyms)
		if err != nil {
			return opts, err
		}
		if opts.Tables, err = klp.ParseKallsyms(data, kallsyms); err != nil {
			return opts, err
		}
	case systemMap != "":
		data, err := os.ReadFile(systemMap)
		if err != nil {
			return opts, err
		}
		t, err := klp.ParseSystemMap(data, systemMap)
		if err != nil {
			return opts, err
		}
		opts.Tables[klp.Vmlinux] = t
	}
	for _, spec := range objects {
		name, file, _ := strings.Cut(spec, "=")
		if name == klp.Vmlinux || name == "" || klp.ModuleName(name) != name {
			return opts, fmt.Errorf("%w: --object %q: want a module name, such as binfmt_misc", errUsage, spec)
		}
		if file == "" && modulesDir != "" {
			if file, err = findModule(modulesDir, name); err != nil {
				return opts, err
			}
		}
		switch {
		case file != "":
			data, err := readModuleFile(file)
			if err != nil {
				return opts, fmt.Errorf("module object %s: %w", name, err)
			}
			if opts.Tables[name], err = klp.ModuleTable(name, data, file); err != nil {
				return opts, fmt.Errorf("module object %s: %w", name, err)
			}
		case opts.Tables[name] == nil:
			return opts, fmt.Errorf("%w: module object %s: give its .ko (--object %s=FILE.ko or --modules DIR), or a --kallsyms dump taken while it was loaded", errUsage, name, name)
		}
		opts.Objects = append(opts.Objects, name)
	}
	return opts, nil
}

// errCompressedModule: the module is compressed in a way kcare-build
// does not read (it reads .ko, .ko.xz and .ko.zst).
var errCompressedModule = errors.New("compressed module")

// maxModuleObject bounds a module object's decompressed size.
const maxModuleObject = 64 << 20

// readModuleFile reads a module's .ko, decompressing .ko.xz (trixie's
// modules) and .ko.zst.
func readModuleFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(path, ".ko"):
		return data, nil
	case strings.HasSuffix(path, ".ko.xz"):
		cmd := exec.Command("xz", "--decompress", "--stdout")
		cmd.Stdin = bytes.NewReader(data)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("xz -d %s: %w: %s (install xz-utils)", path, err, strings.TrimSpace(stderr.String()))
		}
		if out.Len() > maxModuleObject {
			return nil, fmt.Errorf("%s: more than %d bytes decompressed", path, maxModuleObject)
		}
		return out.Bytes(), nil
	case strings.HasSuffix(path, ".ko.zst"):
		d, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderMaxMemory(maxModuleObject))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		out, err := io.ReadAll(io.LimitReader(d, maxModuleObject+1))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(out) > maxModuleObject {
			return nil, fmt.Errorf("%s: more than %d bytes decompressed", path, maxModuleObject)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: %w", path, errCompressedModule)
}

// findModule returns the path of module name's .ko under dir.
func findModule(dir, name string) (string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.Contains(d.Name(), ".ko") || klp.ModuleName(d.Name()) != name {
			return nil
		}
		found = append(found, p)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("module object %s: %w", name, err)
	}
	switch {
	case len(found) == 0:
		return "", fmt.Errorf("module object %s: no %s.ko under %s", name, name, dir)
	case len(found) > 1:
		return "", fmt.Errorf("module object %s: %d files under %s: %s; give one with --object %s=FILE.ko", name, len(found), dir, strings.Join(found, ", "), name)
	case !strings.HasSuffix(found[0], ".ko") && !strings.HasSuffix(found[0], ".ko.xz") && !strings.HasSuffix(found[0], ".ko.zst"):
		return "", fmt.Errorf("module object %s: %s: %w; decompress it and give --object %s=FILE.ko", name, found[0], errCompressedModule, name)
	}
	return found[0], nil
}

// headersRelease returns the kernel release of a headers directory
// (include/config/kernel.release).
func headersRelease(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "include", "config", "kernel.release"))
	if err != nil {
		return "", fmt.Errorf("the headers' kernel release: %w", err)
	}
	r := strings.TrimSpace(string(data))
	if r == "" {
		return "", fmt.Errorf("the headers' kernel release: %s/include/config/kernel.release is empty", dir)
	}
	return r, nil
}

// checkModuleCompiler refuses a module some of whose objects another GCC
// release compiled than the kernel's.
func checkModuleCompiler(ko []byte, want debian.Compiler) error {
	have, err := kmod.Compilers(ko)
	if err != nil {
		return err
	}
	for _, v := range have {
		if v != want.Version {
			return fmt.Errorf("%w: %w: the module was compiled by GCC %s, the kernel by %s", errRefused, kmod.ErrWrongCompiler, v, want.Text)
		}
	}
	return nil
}
