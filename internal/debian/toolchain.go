package debian

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Toolchain is where a kernel's livepatches are built: with the host's
// compiler, or in a build root.
type Toolchain struct {
	Kernel Compiler   // what the kernel was built with
	Used   Compiler   // what builds the livepatch
	Root   *BuildRoot // nil: the host
}

// String says where: "host gcc-12 12.2.0" or "build root trixie
// (x86_64-linux-gnu-gcc-14 14.2.0)".
func (t Toolchain) String() string {
	if t.Root == nil {
		return fmt.Sprintf("host %s %s", t.Used.Command, t.Used.Version)
	}
	return fmt.Sprintf("build root %s (%s %s)", t.Root.Codename, t.Used.Command, t.Used.Version)
}

// HostCompiler returns the host's compiler called command, as its
// --version says; ok is false when the host has none.
func HostCompiler(ctx context.Context, command string) (Compiler, bool) {
	if _, err := exec.LookPath(command); err != nil {
		return Compiler{}, false
	}
	out, err := exec.CommandContext(ctx, command, "--version").Output()
	if err != nil {
		return Compiler{}, false
	}
	first, _, _ := strings.Cut(string(out), "\n")
	c, err := ParseCompiler(first)
	return c, err == nil
}

// SameCompiler reports whether a module built with have suits a kernel
// built with want: the same GCC release. (Debian's revisions of one
// release, 12.2.0-14 and 12.2.0-14+deb12u1, make the same code.)
func SameCompiler(want, have Compiler) bool {
	return want.Version == have.Version && want.Package() == have.Package()
}

// ErrWrongCompiler means a livepatch would be (or was) built with another
// compiler than its kernel.
var ErrWrongCompiler = fmt.Errorf("the compiler differs from the kernel's")

// ChooseToolchain returns where to build livepatches for the kernel whose
// headers are in headersDir (their .config names the compiler): the host
// when its compiler is the kernel's, otherwise the build root of the
// kernel's Debian release from roots, made first if need be (that needs
// the archive, which archive opens, and root).
func ChooseToolchain(ctx context.Context, headersDir, release string, roots *BuildRoots, archive func() (*Archive, error)) (Toolchain, error) {
	config, err := os.ReadFile(filepath.Join(headersDir, ".config"))
	if err != nil {
		return Toolchain{}, fmt.Errorf("the kernel's compiler: %w", err)
	}
	want, err := ReadCompiler(config)
	if err != nil {
		return Toolchain{}, fmt.Errorf("the kernel's compiler: %w", err)
	}
	if host, ok := HostCompiler(ctx, want.Command); ok && SameCompiler(want, host) {
		return Toolchain{Kernel: want, Used: host}, nil
	}
	fam, ok := FamilyOf(release)
	if !ok {
		return Toolchain{}, fmt.Errorf("%w: %s was built with %s, which this host lacks, and belongs to no family whose build root could build it", ErrWrongCompiler, release, want.Text)
	}
	if roots == nil {
		return Toolchain{}, fmt.Errorf("%w: %s was built with %s, which this host lacks; give a build root", ErrWrongCompiler, release, want.Text)
	}
	root, err := roots.Get(fam.Codename)
	if err != nil {
		if archive == nil {
			return Toolchain{}, err
		}
		a, err := archive()
		if err != nil {
			return Toolchain{}, fmt.Errorf("make the %s build root: %w", fam.Codename, err)
		}
		roots.logf("debian: %s was built with %s, which this host lacks; making the %s build root", release, want.Text, fam.Codename)
		if root, err = roots.Make(ctx, a, fam.Codename); err != nil {
			return Toolchain{}, err
		}
	}
	if !SameCompiler(want, root.Compiler) {
		return Toolchain{}, fmt.Errorf("%w: %s was built with %s, the %s build root has %s", ErrWrongCompiler, release, want.Text, root.Codename, root.Compiler.Text)
	}
	return Toolchain{Kernel: want, Used: root.Compiler, Root: root}, nil
}
