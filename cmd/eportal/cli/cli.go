// Package cli is eportal's command line: `serve`, and admin commands that
// act on the same data while the server runs, each a call of the portal's
// core (internal/portal/core). One command group per file; every leaf has
// its own flags (internal/cmdline), so a flag it does not take is
// refused.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// Exit codes: 0 ok, 1 error (and sync --status unhealthy), 2 usage.
const (
	ExitOK    = cmdline.ExitOK
	ExitError = cmdline.ExitError
	ExitUsage = cmdline.ExitUsage
)

// DefaultDataDir is where eportal keeps its data by default.
const DefaultDataDir = "/var/lib/eportal"

var now = func() time.Time { return time.Now().UTC() }

// env is where a run of eportal reads and writes.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// Program is eportal's command tree writing to e's streams.
func Program(e *env) *cmdline.Program {
	return &cmdline.Program{
		Name: "eportal",
		Root: &cmdline.Command{Sub: []*cmdline.Command{
			serveCmd(e), keyCmd(e), feedCmd(e), patchsetCmd(e), serverCmd(e), userCmd(e), tokenCmd(e),
			ipCmd(e), resellerCmd(e), publisherCmd(e), syncCmd(e), exportCmd(e), importCmd(e), tlsPinCmd(e), migrateCmd(e), rolloutCmd(e),
		}},
		Stdout: e.stdout, Stderr: e.stderr,
		Fail: func(path string, err error) {
			if errors.Is(err, errUnhealthy) {
				return // sync --status has printed why
			}
			fmt.Fprintf(e.stderr, "%s: %v\n", path, err)
		},
	}
}

// Run runs eportal and returns its exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Program(&env{stdin: stdin, stdout: stdout, stderr: stderr}).Run(ctx, args)
}

func usageErr(format string, args ...any) error { return cmdline.Usagef(format, args...) }

// group is a command of subcommands.
func group(name, summary string, sub ...*cmdline.Command) *cmdline.Command {
	return &cmdline.Command{Name: name, Summary: summary, Sub: sub}
}

// flags is a leaf's flag set.
func flags(name string) *flag.FlagSet { return flag.NewFlagSet("eportal "+name, flag.ContinueOnError) }

// dbFlags are the flags of every command that opens the store.
type dbFlags struct {
	data string
	dsn  string
}

// withDB adds --data and --db to fs.
func withDB(fs *flag.FlagSet) *dbFlags {
	d := &dbFlags{}
	fs.StringVar(&d.data, "data", DefaultDataDir, "data `DIR` (SQLite database, bundles, keys)")
	fs.StringVar(&d.dsn, "db", "", "PostgreSQL `DSN` (postgres://…) instead of SQLite in the data dir")
	return d
}

// open opens the store and returns the core over it, and the store to
// close when done. Changes are made as core.CLI.
func (d *dbFlags) open(ctx context.Context, e *env) (*core.Core, io.Closer, error) {
	return d.openWith(ctx, e, nil)
}

// openWith is open with the publishers directory's keys.
func (d *dbFlags) openWith(ctx context.Context, e *env, publishers *trust.Keyring) (*core.Core, io.Closer, error) {
	st, err := store.Open(ctx, d.data, d.dsn)
	if err != nil {
		return nil, nil, err
	}
	c := core.New(core.Config{Store: st, DataDir: d.data, Publishers: publishers,
		Log: slog.New(slog.NewTextHandler(e.stderr, nil)), Now: now})
	return c, st, nil
}

// withCore is a leaf's Run that opens the core first and closes it after.
func withCore(e *env, db *dbFlags, run func(ctx context.Context, c *core.Core, args []string) error) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		c, st, err := db.open(ctx, e)
		if err != nil {
			return err
		}
		defer st.Close()
		return run(ctx, c, args)
	}
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// set reports which flags of fs the command line gave.
func set(fs *flag.FlagSet) map[string]bool {
	m := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
