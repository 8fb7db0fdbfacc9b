// Package cli is kcare-build's command line: one subcommand per file.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitError   = 1
	ExitUsage   = 2
	ExitRefused = 3 // verify: the bundle or its signature is not good
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"analyze":   {"list the functions a kernel fix changes", runAnalyze},
	"buildroot": {"list, make or remove the Debian build roots of other compilers", runBuildroot},
	"keygen":    {"make a publisher signing key pair", runKeygen},
	"matrix":    {"build, pack and publish one livepatch for many kernels", runMatrix},
	"module":    {"build a livepatch module against a kernel's headers", runModule},
	"pack":      {"pack and sign a module as a patch bundle", runPack},
	"verify":    {"check a bundle's signature and contents", runVerify},
	"publish":   {"upload a bundle and its signature to a portal", runPublish},
	"test":      {"boot a level's own kernel in QEMU, apply the level and run its check", runTest},
}

// errUsage marks an error in the command line.
var errUsage = errors.New("usage")

// Run runs kcare-build with args and returns its exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "kcare-build: unknown command %q\n", args[0])
		usage(stderr)
		return ExitUsage
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		if msg := strings.TrimPrefix(err.Error(), errUsage.Error()+": "); msg != err.Error() {
			fmt.Fprintf(stderr, "kcare-build %s: %s\n", args[0], msg)
		}
		return ExitUsage
	case errors.Is(err, errTestFailed):
		fmt.Fprintf(stderr, "kcare-build %s: %v\n", args[0], err)
		return ExitTestFailed
	case errors.Is(err, errRefused):
		fmt.Fprintf(stderr, "kcare-build %s: %v\n", args[0], err)
		return ExitRefused
	}
	fmt.Fprintf(stderr, "kcare-build %s: %v\n", args[0], err)
	return ExitError
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: kcare-build COMMAND [options]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
}

// parse parses a subcommand's flags; a parse error is a usage error.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 && fs.Name() != "verify" && fs.Name() != "publish" && fs.Name() != "analyze" && fs.Name() != "buildroot" && fs.Name() != "test" {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

func required(pairs ...string) error {
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return fmt.Errorf("%w: --%s is required", errUsage, pairs[i])
		}
	}
	return nil
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
