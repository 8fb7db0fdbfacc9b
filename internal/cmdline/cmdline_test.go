package cmdline_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"testing"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/failure"
)

var errStuck = failure.New(failure.Stalled, "transition stuck")

// program is "demo" with "greet NAME [--loud]" and "fail".
func program(out, errw *bytes.Buffer) *cmdline.Program {
	fs := flag.NewFlagSet("demo greet", flag.ContinueOnError)
	loud := fs.Bool("loud", false, "shout")
	times := fs.Int("times", 1, "say it `N` times")
	greet := &cmdline.Command{Name: "greet", Args: "NAME", Summary: "say hello", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: func(ctx context.Context, args []string) error {
			for range *times {
				if *loud {
					fmt.Fprintf(out, "HELLO %s\n", args[0])
				} else {
					fmt.Fprintf(out, "hello %s\n", args[0])
				}
			}
			return nil
		}}
	fail := &cmdline.Command{Name: "fail", Summary: "fail as a stalled transition",
		Run: func(ctx context.Context, args []string) error { return fmt.Errorf("apply: %w", errStuck) }}
	return &cmdline.Program{Name: "demo", Root: &cmdline.Command{Sub: []*cmdline.Command{greet, fail}},
		Exits: []cmdline.Exit{{Category: failure.Stalled, Code: 5}}, Stdout: out, Stderr: errw}
}

func TestProgram(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"leaf", []string{"greet", "ann"}, 0, "hello ann\n", ""},
		{"flags_after_args", []string{"greet", "ann", "--loud", "--times", "2"}, 0, "HELLO ann\nHELLO ann\n", ""},
		{"double_dash", []string{"greet", "--", "--loud"}, 0, "hello --loud\n", ""},
		{"unknown_flag", []string{"greet", "ann", "--quiet"}, 2, "", "demo greet: flag provided but not defined: -quiet (demo greet --help lists the options)\n"},
		{"missing_arg", []string{"greet"}, 2, "", "demo greet: give NAME\n"},
		{"extra_arg", []string{"greet", "ann", "bob"}, 2, "", "demo greet: unexpected argument \"bob\"\n"},
		{"category_exit", []string{"fail"}, 5, "", "demo fail: apply: transition stuck\n"},
		{"leaf_help", []string{"greet", "--help"}, 0, "usage: demo greet [options] NAME\n\nsay hello\n\noptions:\n  --loud\n    \tshout\n  --times N\n    \tsay it N times (default 1)\n", ""},
		{"group_help", []string{"--help"}, 0, "usage: demo COMMAND [options]\n\ncommands:\n  fail   fail as a stalled transition\n  greet  say hello\n\n'demo COMMAND --help' shows a command's options.\n", ""},
		{"unknown_command", []string{"wave"}, 2, "", "usage: demo COMMAND [options]\n\ncommands:\n  fail   fail as a stalled transition\n  greet  say hello\n\n'demo COMMAND --help' shows a command's options.\ndemo: unknown command \"wave\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errw bytes.Buffer
			code := program(&out, &errw).Run(context.Background(), tt.args)
			if code != tt.code || out.String() != tt.stdout || errw.String() != tt.stderr {
				t.Errorf("demo %q: exit %d\nstdout %q\nstderr %q\nwant exit %d\nstdout %q\nstderr %q", tt.args, code, out.String(), errw.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}
