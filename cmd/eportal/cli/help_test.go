package cli

import (
	"io"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/cmdline/cmdlinetest"
)

// TestHelpAndFlags walks every eportal command's --help and checks each
// leaf refuses a flag it does not take.
func TestHelpAndFlags(t *testing.T) {
	n := cmdlinetest.WalkHelp(t, func(stdout, stderr io.Writer) *cmdline.Program {
		return Program(&env{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr})
	})
	if n < 40 {
		t.Errorf("walked %d commands, want every one (40 or more)", n)
	}
}

// TestLeafFlagsOwn: a flag of one leaf is refused by another, not
// accepted and ignored.
func TestLeafFlagsOwn(t *testing.T) {
	data := t.TempDir()
	for _, args := range [][]string{
		{"server", "list", "--inactive", "5"},
		{"server", "delete", "srv-1", "--key", "k1"},
		{"key", "list", "--limit", "3"},
		{"feed", "list", "--channel", "test"},
	} {
		stdout, stderr, code := run(t, "", append(args, "--data", data)...)
		flagName := args[len(args)-2]
		if code != ExitUsage || stdout != "" || !strings.Contains(stderr, "flag provided but not defined: -"+strings.TrimLeft(flagName, "-")) {
			t.Errorf("eportal %s: exit %d\nstdout %q\nstderr %q\nwant exit 2 refusing %s", strings.Join(args, " "), code, stdout, stderr, flagName)
		}
	}
}
