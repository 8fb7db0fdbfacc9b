// Package testbin builds the project's commands for the tests that run
// them as processes: each command once per test binary, into one
// temporary directory that Cleanup removes.
package testbin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// buildBound bounds one go build.
const buildBound = 5 * time.Minute

var (
	mu    sync.Mutex
	dir   string
	built = map[string]error{} // by package: the build's outcome
)

// Path returns the path of the command pkg ("cmd/eportal",
// "test/loadgen": a directory of this module), built the first time a
// test asks for it; the binary is named after pkg's last element.
func Path(tb testing.TB, pkg string) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	err, ok := built[pkg]
	if !ok {
		err = build(pkg)
		built[pkg] = err
	}
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.Join(dir, path.Base(pkg))
}

// build builds pkg into dir, made on first use.
func build(pkg string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "kcare-testbin-")
		if err != nil {
			return err
		}
		dir = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, path.Base(pkg)), "github.com/kcare/kcare/"+pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return nil
}

// Cleanup removes what Path built; a TestMain calls it after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	dir, built = "", map[string]error{}
}
