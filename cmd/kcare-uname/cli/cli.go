// Package cli is kcare-uname's command line: uname's options and output,
// with the release (-r) and version (-v) fields those of the effective
// kernel when a patch level is applied, exactly as uname prints them
// otherwise.
package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/cmdline"
)

// Uname is what uname(2) returns, as strings.
type Uname struct {
	Sysname, Nodename, Release, Version, Machine string
}

// fields in uname's output order, with their short and long options.
type field struct {
	short byte
	long  string
	get   func(u Uname) string
}

var fields = []field{
	{'s', "kernel-name", func(u Uname) string { return u.Sysname }},
	{'n', "nodename", func(u Uname) string { return u.Nodename }},
	{'r', "kernel-release", func(u Uname) string { return u.Release }},
	{'v', "kernel-version", func(u Uname) string { return u.Version }},
	{'m', "machine", func(u Uname) string { return u.Machine }},
	{'p', "processor", func(u Uname) string { return unknown }},
	{'i', "hardware-platform", func(u Uname) string { return unknown }},
	{'o', "operating-system", func(u Uname) string { return "GNU/Linux" }},
}

// unknown is what GNU uname prints for -p and -i on Linux; -a leaves them out.
const unknown = "unknown"

// readUname and root are replaced in tests.
var (
	readUname = func() (Uname, error) {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return Uname{}, err
		}
		return Uname{
			Sysname:  unix.ByteSliceToString(u.Sysname[:]),
			Nodename: unix.ByteSliceToString(u.Nodename[:]),
			Release:  unix.ByteSliceToString(u.Release[:]),
			Version:  unix.ByteSliceToString(u.Version[:]),
			Machine:  unix.ByteSliceToString(u.Machine[:]),
		}, nil
	}
	root = "/"
)

// usageHelp lists uname's options as kcare-uname takes them.
const usageHelp = `As uname: print the fields asked for, in uname's order (-s when none is).
With a patch level applied, -r and -v are the effective kernel's.

options (grouped as -snr, or long, abbreviated as getopt_long allows):
  -a, --all                all the fields, but -p and -i when unknown
  -s, --kernel-name        the kernel name
  -n, --nodename           the network node hostname
  -r, --kernel-release     the kernel release (effective)
  -v, --kernel-version     the kernel version (effective)
  -m, --machine            the machine hardware name
  -p, --processor          the processor type
  -i, --hardware-platform  the hardware platform
  -o, --operating-system   the operating system

exit 0; 2 for an unknown option or operand; 1 for another error`

// Program is kcare-uname's command line writing to stdout and stderr.
func Program(stdout, stderr io.Writer) *cmdline.Program {
	root := &cmdline.Command{Args: "[-asnrvmpio]", Help: usageHelp, RawArgs: true,
		Run: func(ctx context.Context, args []string) error { return run(args, stdout) }}
	return &cmdline.Program{Name: "kcare-uname", Root: root, Stdout: stdout, Stderr: stderr}
}

// Run runs kcare-uname and returns its exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	return Program(stdout, stderr).Run(context.Background(), args)
}

// run prints the fields args ask for.
func run(args []string, stdout io.Writer) error {
	want := map[byte]bool{}
	all := false
	for _, a := range args {
		switch {
		case a == "-a" || a == "--all":
			all = true
		case strings.HasPrefix(a, "--"):
			c, ok := longOption(a[2:])
			if !ok {
				return cmdline.Usagef("unrecognized or ambiguous option '%s'", a)
			}
			if c == 'a' {
				all = true
			} else {
				want[c] = true
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for i := 1; i < len(a); i++ {
				c := a[i]
				if c == 'a' {
					all = true
					continue
				}
				known := false
				for _, f := range fields {
					known = known || f.short == c
				}
				if !known {
					return cmdline.Usagef("invalid option -- '%c'", c)
				}
				want[c] = true
			}
		default:
			return cmdline.Usagef("extra operand %q", a)
		}
	}
	if len(want) == 0 && !all {
		want['s'] = true
	}
	u, err := readUname()
	if err != nil {
		return err
	}
	info, err := (&agent.Agent{Root: root}).Info()
	if err != nil {
		return err
	}
	if info.State == "applied" {
		u.Release = info.EffectiveRelease
		u.Version = info.EffectiveKernelVersion
	}
	var out []string
	for _, f := range fields {
		if all && f.get(u) == unknown {
			continue // uname -a leaves out what it does not know
		}
		if all || want[f.short] {
			out = append(out, f.get(u))
		}
	}
	_, err = fmt.Fprintln(stdout, strings.Join(out, " "))
	return err
}

// longOption returns the short option of a long one, which may be
// abbreviated to any unambiguous prefix, as getopt_long allows.
func longOption(name string) (byte, bool) {
	var match byte
	n := 0
	for _, f := range append(fields[:len(fields):len(fields)], field{short: 'a', long: "all"}) {
		if f.long == name {
			return f.short, true
		}
		if name != "" && strings.HasPrefix(f.long, name) {
			match, n = f.short, n+1
		}
	}
	return match, n == 1
}
