// Package cmdlinetest checks a program built with internal/cmdline the
// way its users meet it: every command's --help, and every leaf's flags.
package cmdlinetest

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/cmdline"
)

// WalkHelp walks every command of the program newProgram makes (a fresh
// one per run, writing to the given streams) and checks that:
//
//   - COMMAND --help exits 0 and prints to stdout alone the usage, which
//     starts "usage: PROGRAM COMMAND" and lists every subcommand, or for a
//     leaf every one of its flags as --NAME;
//   - a leaf refuses a flag it does not take with the usage exit code,
//     naming the flag on stderr and printing nothing on stdout.
//
// It returns how many commands it walked.
func WalkHelp(t *testing.T, newProgram func(stdout, stderr io.Writer) *cmdline.Program) int {
	t.Helper()
	var out, errw bytes.Buffer
	root := newProgram(&out, &errw)
	usageCode := root.UsageCode
	if usageCode == 0 {
		usageCode = cmdline.ExitUsage
	}
	n := 0
	cmdline.Walk(root.Root, func(path []string, c *cmdline.Command) {
		n++
		name := strings.TrimSpace(root.Name + " " + strings.Join(path, " "))
		run := func(args ...string) (int, string, string) {
			out.Reset()
			errw.Reset()
			p := newProgram(&out, &errw)
			code := p.Run(context.Background(), append(append([]string(nil), path...), args...))
			return code, out.String(), errw.String()
		}
		code, stdout, stderr := run("--help")
		if code != cmdline.ExitOK || stderr != "" || !strings.HasPrefix(stdout, "usage: "+name) {
			t.Errorf("%s --help: exit %d\nstdout %q\nstderr %q\nwant exit 0 and the usage on stdout alone", name, code, stdout, stderr)
			return
		}
		for _, s := range c.Sub {
			if !strings.Contains(stdout, "  "+s.Name+" ") {
				t.Errorf("%s --help does not list %s:\n%s", name, s.Name, stdout)
			}
		}
		if len(c.Sub) > 0 {
			return
		}
		if c.Flags != nil {
			c.Flags.VisitAll(func(f *flag.Flag) {
				dash := "--"
				if len(f.Name) == 1 {
					dash = "-"
				}
				if !strings.Contains(stdout, "  "+dash+f.Name) {
					t.Errorf("%s --help does not list %s%s:\n%s", name, dash, f.Name, stdout)
				}
			})
		}
		code, stdout, stderr = run("--no-such-flag")
		if code != usageCode || stdout != "" && usageCode != 3 || !strings.Contains(stderr+stdout, "no-such-flag") {
			t.Errorf("%s --no-such-flag: exit %d\nstdout %q\nstderr %q\nwant exit %d naming the flag", name, code, stdout, stderr, usageCode)
		}
	})
	return n
}
