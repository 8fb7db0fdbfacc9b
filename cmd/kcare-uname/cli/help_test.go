package cli

import (
	"io"
	"testing"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/cmdline/cmdlinetest"
)

// TestHelpAndFlags: --help prints the usage and every option; an unknown
// option is refused with the usage exit code.
func TestHelpAndFlags(t *testing.T) {
	cmdlinetest.WalkHelp(t, func(stdout, stderr io.Writer) *cmdline.Program { return Program(stdout, stderr) })
}
