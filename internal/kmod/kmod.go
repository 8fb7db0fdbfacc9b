// Package kmod loads and removes kernel modules with finit_module and
// delete_module, and reads the .modinfo of a module file.
package kmod

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Loader puts modules into a kernel and takes them out. The kernel's
// implementation is Kernel; tests use an in-process fake.
type Loader interface {
	// Load inserts the module image.
	Load(ctx context.Context, image []byte) error
	// Unload removes the module called name.
	Unload(ctx context.Context, name string) error
}

// Errors from the kernel that callers act on.
var (
	ErrExists = errors.New("module already loaded")
	ErrBusy   = errors.New("module in use")
	ErrAbsent = errors.New("module not loaded")
)

// busyRetries bounds how often a load or unload is retried on EBUSY/EAGAIN,
// the only errors the kernel gives for a state that passes by itself.
const (
	busyRetries = 20
	busyPause   = 250 * time.Millisecond
)

// Kernel is the Loader for the running kernel.
type Kernel struct{}

// Load inserts image with finit_module on a memfd, falling back to
// init_module where memfd_create is not available.
func (Kernel) Load(ctx context.Context, image []byte) error {
	return retryBusy(ctx, func() error { return loadImage(image) })
}

func loadImage(image []byte) error {
	fd, err := unix.MemfdCreate("kcare-module", unix.MFD_CLOEXEC)
	if err != nil {
		return mapErrno("init_module", unix.InitModule(image, ""))
	}
	f := os.NewFile(uintptr(fd), "kcare-module")
	defer f.Close()
	if _, err := f.Write(image); err != nil {
		return fmt.Errorf("write module to memfd: %w", err)
	}
	return mapErrno("finit_module", unix.FinitModule(int(f.Fd()), "", 0))
}

// Unload removes the module name with delete_module(O_NONBLOCK).
func (Kernel) Unload(ctx context.Context, name string) error {
	return retryBusy(ctx, func() error {
		return mapErrno("delete_module", unix.DeleteModule(name, unix.O_NONBLOCK))
	})
}

func retryBusy(ctx context.Context, op func() error) error {
	var err error
	for i := 0; i < busyRetries; i++ {
		if err = op(); !errors.Is(err, ErrBusy) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(busyPause):
		}
	}
	return err
}

func mapErrno(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: %w", op, ErrExists)
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EAGAIN):
		return fmt.Errorf("%s: %w (%v)", op, ErrBusy, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", op, ErrAbsent)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Info is what a module file says about itself in its .modinfo section.
type Info struct {
	Name      string
	Vermagic  string
	Livepatch bool
	License   string
	Fields    map[string][]string
}

// Release is the kernel release a module was built for: the first word of
// its vermagic.
func (i Info) Release() string {
	f := strings.Fields(i.Vermagic)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// ReadInfo parses the .modinfo section of a module image.
func ReadInfo(image []byte) (Info, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return Info{}, fmt.Errorf("read module: not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Type != elf.ET_REL {
		return Info{}, errors.New("read module: not a 64-bit relocatable object")
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return Info{}, errors.New("read module: no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return Info{}, fmt.Errorf("read module .modinfo: %w", err)
	}
	return ParseModinfo(data)
}

// ParseModinfo parses NUL-separated key=value strings.
func ParseModinfo(data []byte) (Info, error) {
	info := Info{Fields: map[string][]string{}}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if len(kv) == 0 {
			continue
		}
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			return Info{}, fmt.Errorf("modinfo: malformed entry %q", kv)
		}
		info.Fields[k] = append(info.Fields[k], v)
	}
	first := func(k string) string {
		if v := info.Fields[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	info.Name = first("name")
	info.Vermagic = first("vermagic")
	info.License = first("license")
	info.Livepatch = first("livepatch") == "Y"
	if info.Name == "" || info.Vermagic == "" {
		return Info{}, errors.New("modinfo: no name or vermagic")
	}
	return info, nil
}

// gccComment matches a GCC identification in a .comment section or a
// kernel banner: "GCC: (Debian 12.2.0-14+deb12u1) 12.2.0" or
// "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0".
var gccComment = regexp.MustCompile(`(?:GCC:|gcc[-0-9]*) \([^)]*\) ([0-9]+\.[0-9]+(?:\.[0-9]+)?)`)

// Compilers returns the GCC versions ("12.2.0") named in a module's
// .comment section, one each, in order: what compiled its objects.
func Compilers(image []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("read module: not an ELF file: %w", err)
	}
	defer f.Close()
	sec := f.Section(".comment")
	if sec == nil {
		return nil, nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read module .comment: %w", err)
	}
	var out []string
	for _, s := range strings.Split(string(data), "\x00") {
		if m := gccComment.FindStringSubmatch(s); m != nil && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out, nil
}

// BannerCompiler returns the GCC version a kernel was built with, from
// its banner ("Linux version 6.1.0-47-amd64 (…) (gcc-12 (Debian
// 12.2.0-14+deb12u1) 12.2.0, GNU ld …"); ok is false for another compiler.
func BannerCompiler(banner string) (string, bool) {
	m := gccComment.FindStringSubmatch(banner)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// ErrWrongCompiler means a module was compiled by another GCC release than
// its kernel: its code would not match the kernel's conventions.
var ErrWrongCompiler = errors.New("module built with another compiler than the kernel")

// CheckCompiler refuses a module compiled with another GCC release than
// the kernel whose banner is given.
func CheckCompiler(image []byte, banner string) error {
	have, err := Compilers(image)
	if err != nil {
		return err
	}
	want, ok := BannerCompiler(banner)
	if !ok {
		return nil // not a GCC kernel: nothing to compare
	}
	for _, v := range have {
		if v != want {
			return fmt.Errorf("%w: the module was compiled by GCC %s, the kernel by GCC %s", ErrWrongCompiler, v, want)
		}
	}
	if len(have) == 0 {
		return fmt.Errorf("%w: the module names no compiler (no .comment), the kernel was compiled by GCC %s", ErrWrongCompiler, want)
	}
	return nil
}
