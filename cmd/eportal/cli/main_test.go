package cli

import (
	"context"
	"os"
	"testing"
)

// mainEnv makes the test binary run as eportal itself, for tests that
// need a real eportal process (its peak memory, its exit code).
const mainEnv = "KCARE_TEST_RUN_EPORTAL"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
