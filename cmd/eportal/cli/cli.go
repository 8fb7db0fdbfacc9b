// Package cli is eportal's command line: `serve`, and admin commands that
// act on the same data while the server runs. One command group per file.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// DefaultDataDir is where eportal keeps its data by default.
const DefaultDataDir = "/var/lib/eportal"

type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":     {"run the portal", runServe},
		"key":       {"activation keys: add, list, edit, delete", runKey},
		"feed":      {"feeds: add, list, edit, delete", runFeed},
		"patchset":  {"patchsets in a feed: list, enable, disable, enable-upto, undeploy-downto", runPatchset},
		"server":    {"servers: list, delete, clean", runServer},
		"user":      {"operators: add, list, delete", runUser},
		"token":     {"API keys: add", runToken},
		"ip":        {"IP licenses: add, list, delete", runIP},
		"reseller":  {"resellers for the Nagios reseller API: add, token, list, delete", runReseller},
		"publisher": {"publisher keys bundles must be signed by: add FILE.pub, list, remove FINGERPRINT", runPublisher},
		"sync":      {"fetch new levels from an upstream portal (or --status)", runSync},
		"export":    {"write levels and bundles to an archive for an air-gapped portal", runExport},
		"import":    {"verify and import an export archive", runImport},
		"tls-pin":   {"print the public key pin of the portal's TLS certificate (curl's format)", runTLSPin},
	}
}

var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// Run runs eportal and returns its exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "eportal: unknown command %q\n", args[0])
		usage(stderr)
		return ExitUsage
	}
	err := c.run(ctx, &env{stdin: stdin, stdout: stdout, stderr: stderr}, args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUnhealthy):
		return ExitError
	case errors.Is(err, errUsage):
		msg := strings.TrimPrefix(err.Error(), "usage: ")
		if msg != "usage" {
			fmt.Fprintf(stderr, "eportal %s: %s\n", args[0], msg)
		}
		return ExitUsage
	}
	fmt.Fprintf(stderr, "eportal %s: %v\n", args[0], err)
	return ExitError
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: eportal COMMAND [options]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
}

// dbFlags are the flags every command that opens the store takes.
type dbFlags struct {
	data string
	dsn  string
}

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.data, "data", DefaultDataDir, "data `DIR` (SQLite database, bundles, keys)")
	fs.StringVar(&d.dsn, "db", "", "PostgreSQL `DSN` (postgres://…) instead of SQLite in the data dir")
}

// open opens the store and returns the core over it, and the store to
// close when done. Changes are made as core.CLI.
func (d *dbFlags) open(ctx context.Context, e *env) (*core.Core, io.Closer, error) {
	return d.openWith(ctx, e, nil)
}

// openWith is open with the publisher keys a bundle must be signed by.
func (d *dbFlags) openWith(ctx context.Context, e *env, publishers *trust.Keyring) (*core.Core, io.Closer, error) {
	st, err := store.Open(ctx, d.data, d.dsn)
	if err != nil {
		return nil, nil, err
	}
	c := core.New(core.Config{Store: st, DataDir: d.data, Publishers: publishers,
		Log: slog.New(slog.NewTextHandler(e.stderr, nil)), Now: now})
	return c, st, nil
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, e *env, args []string) ([]string, error) {
	fs.SetOutput(e.stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// sub picks a subcommand.
func sub(args []string, names ...string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, usageErr("give one of: %s", strings.Join(names, ", "))
	}
	for _, n := range names {
		if args[0] == n {
			return n, args[1:], nil
		}
	}
	return "", nil, usageErr("unknown subcommand %q (one of: %s)", args[0], strings.Join(names, ", "))
}
