package vm_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

var (
	fixOnce sync.Once
	fix     *fixture.Fixture
	fixErr  error
)

// requireVM skips (or, in CI, fails) when the host cannot run the VM
// suite, and returns the shared fixture, built once per test binary.
func requireVM(t testing.TB) *fixture.Fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("VM tests do not run with -short")
	}
	if err := qemu.CheckHost(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("VM suite cannot run: %v", err)
		}
		t.Skipf("VM suite cannot run: %v", err)
	}
	fixOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		start := time.Now()
		logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "vm fixture: "+format+"\n", args...) }
		fix, fixErr = fixture.Build(ctx, debkernel.DefaultCacheDir(), logf)
		logf("built in %s", time.Since(start).Round(time.Millisecond))
	})
	if fixErr != nil {
		t.Fatalf("build fixture: %v", fixErr)
	}
	return fix
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		os.RemoveAll(fix.Dir)
	}
	os.Exit(code)
}
