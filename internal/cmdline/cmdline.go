// Package cmdline is the shape the kcare commands share: a command is a
// tree of subcommands whose leaves each have their own flag set, so a
// flag one leaf does not take is refused rather than ignored; one usage
// text; flags accepted before or after the arguments; and exit codes
// mapped from failure categories (internal/failure), with usage errors
// the category failure.Usage.
package cmdline

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/kcare/kcare/internal/failure"
)

// Command is a command: a leaf that runs, or a group of subcommands.
type Command struct {
	Name string
	Args string // the positional arguments as the synopsis shows them: "FILE.pub...", "[ID]"
	// Synopsis, when set, is the whole usage line after "usage: ", for a
	// command whose options are better shown than as "[options]".
	Synopsis string
	Summary  string // one line, for the group's list
	Help     string // text after the synopsis, optional
	// Flags are a leaf's own flags; nil: none. Their usage strings name
	// a placeholder in backquotes, as the flag package has it.
	Flags *flag.FlagSet
	// MinArgs and MaxArgs bound a leaf's positional arguments; MaxArgs
	// -1 is any number. The zero values take none.
	MinArgs, MaxArgs int
	// RawArgs: the leaf reads its arguments itself (kcare-uname takes
	// uname's grouped short options); only --help is the package's.
	RawArgs bool
	Run     func(ctx context.Context, args []string) error
	Sub     []*Command
}

// Exit maps a failure category to an exit code.
type Exit struct {
	Category error
	Code     int
}

// Exit codes every program shares; a program may map others.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Program is a command with its name, its exit codes and where it writes.
type Program struct {
	Name string
	Root *Command
	// Exits map categories to exit codes, the first that matches; an
	// error none matches exits ErrorCode.
	Exits []Exit
	// ErrorCode is the exit code of a failure no Exit maps; 0 is
	// ExitError.
	ErrorCode int
	// UsageCode is the exit code of a usage error; 0 is ExitUsage.
	UsageCode      int
	Stdout, Stderr io.Writer
	// Fail reports err, the failure of the command at path, to the user;
	// nil writes "PROGRAM PATH: err" to Stderr.
	Fail func(path string, err error)
}

// Usagef is a usage error with a message: the command line is wrong.
func Usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// Is reports whether target is failure.Usage.
func (e *usageError) Is(target error) bool { return target == failure.Usage }

// Status is a command's answer given as its exit code, not a failure:
// nothing is reported, and the program exits with it (kcarectl --check
// and --status answer this way).
type Status int

func (s Status) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// errShown is a usage error whose message is already out (the flag
// package wrote it).
var errShown = &usageError{msg: "usage"}

// ExitCode is the exit code of err, as p maps it.
func (p *Program) ExitCode(err error) int {
	var st Status
	if errors.As(err, &st) {
		return int(st)
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, failure.Usage):
		if p.UsageCode != 0 {
			return p.UsageCode
		}
		return ExitUsage
	}
	for _, e := range p.Exits {
		if errors.Is(err, e.Category) {
			return e.Code
		}
	}
	if p.ErrorCode != 0 {
		return p.ErrorCode
	}
	return ExitError
}

// Run runs the command args name and returns its exit code, having
// reported any failure once.
func (p *Program) Run(ctx context.Context, args []string) int {
	path, err := p.run(ctx, args)
	var st Status
	if err != nil && !errors.Is(err, flag.ErrHelp) && err != errShown && !errors.As(err, &st) {
		if p.Fail != nil {
			p.Fail(path, err)
		} else {
			fmt.Fprintf(p.Stderr, "%s: %v\n", path, err)
		}
	}
	return p.ExitCode(err)
}

// run finds the leaf args name and runs it; path is the command line of
// the command it reached ("eportal key add").
func (p *Program) run(ctx context.Context, args []string) (path string, err error) {
	cmd, path := p.Root, p.Name
	for len(cmd.Sub) > 0 {
		if len(args) == 0 {
			p.usage(p.Stderr, cmd, path)
			return path, errShown
		}
		if isHelp(args[0]) {
			p.usage(p.Stdout, cmd, path)
			return path, flag.ErrHelp
		}
		next := find(cmd.Sub, args[0])
		if next == nil {
			p.usage(p.Stderr, cmd, path)
			return path, Usagef("unknown command %q", args[0])
		}
		cmd, path, args = next, path+" "+next.Name, args[1:]
	}
	if cmd.RawArgs {
		for _, a := range args {
			if a == "--help" {
				p.usage(p.Stdout, cmd, path)
				return path, flag.ErrHelp
			}
		}
		return path, cmd.Run(ctx, args)
	}
	pos, err := p.parse(cmd, path, args)
	if err != nil {
		return path, err
	}
	if len(pos) < cmd.MinArgs {
		return path, Usagef("give %s", cmd.Args)
	}
	if cmd.MaxArgs >= 0 && len(pos) > cmd.MaxArgs {
		return path, Usagef("unexpected argument %q", pos[cmd.MaxArgs])
	}
	return path, cmd.Run(ctx, pos)
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "help" }

func find(cmds []*Command, name string) *Command {
	for _, c := range cmds {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// parse parses a leaf's flags, which may come before or after its
// positional arguments; "--" ends the flags.
func (p *Program) parse(cmd *Command, path string, args []string) ([]string, error) {
	fs := cmd.Flags
	if fs == nil {
		fs = flag.NewFlagSet(path, flag.ContinueOnError)
	}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				p.usage(p.Stdout, cmd, path)
				return nil, flag.ErrHelp
			}
			return nil, Usagef("%v (%s --help lists the options)", err, path)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" && len(pos) == 0 {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// Usage writes the usage text of the command at path (its words after
// the program's name) to w: the synopsis, the summary and help, and the
// subcommands or the options.
func (p *Program) Usage(w io.Writer, path ...string) error {
	cmd, line := p.Root, p.Name
	for _, name := range path {
		next := find(cmd.Sub, name)
		if next == nil {
			return fmt.Errorf("no command %q in %s", name, line)
		}
		cmd, line = next, line+" "+name
	}
	p.usage(w, cmd, line)
	return nil
}

func (p *Program) usage(w io.Writer, cmd *Command, path string) {
	if len(cmd.Sub) > 0 {
		fmt.Fprintf(w, "usage: %s COMMAND [options]\n", path)
	} else {
		syn := cmd.Synopsis
		if syn == "" {
			syn = path
			if hasFlags(cmd.Flags) {
				syn += " [options]"
			}
			if cmd.Args != "" {
				syn += " " + cmd.Args
			}
		}
		fmt.Fprintf(w, "usage: %s\n", syn)
	}
	if cmd.Summary != "" && path != p.Name {
		fmt.Fprintf(w, "\n%s\n", cmd.Summary)
	}
	if cmd.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(cmd.Help, "\n"))
	}
	if len(cmd.Sub) > 0 {
		fmt.Fprintf(w, "\ncommands:\n")
		subs := append([]*Command(nil), cmd.Sub...)
		sort.Slice(subs, func(i, j int) bool { return subs[i].Name < subs[j].Name })
		width := 0
		for _, s := range subs {
			width = max(width, len(s.Name))
		}
		for _, s := range subs {
			fmt.Fprintf(w, "  %-*s  %s\n", width, s.Name, s.Summary)
		}
		fmt.Fprintf(w, "\n'%s COMMAND --help' shows a command's options.\n", path)
		return
	}
	if hasFlags(cmd.Flags) {
		fmt.Fprintf(w, "\noptions:\n")
		PrintFlags(w, cmd.Flags)
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	if fs != nil {
		fs.VisitAll(func(*flag.Flag) { n++ })
	}
	return n > 0
}

// PrintFlags writes fs's flags as the kcare commands list them:
// "  --name VALUE" and the usage on the next line, with the default when
// it is not the zero value.
func PrintFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		line := "  " + dash + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if !isZeroDefault(f) {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "0s", "[]":
		return true
	}
	return false
}

// Walk calls fn for every command under root, root first, with its path
// (the names after the program's).
func Walk(root *Command, fn func(path []string, c *Command)) {
	var walk func(path []string, c *Command)
	walk = func(path []string, c *Command) {
		fn(path, c)
		for _, s := range c.Sub {
			walk(append(append([]string(nil), path...), s.Name), s)
		}
	}
	walk(nil, root)
}
