package flock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLock: a second holder is refused at once with bound 0, after its
// bound otherwise, and by its context with Forever; it gets the lock once
// the first lets go. flock locks belong to open files, so two opens in one
// process contend as two processes would.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := Path(t.Context(), path, 0o600, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file %v, %v; want mode 0600", fi, err)
	}
	if _, err := Path(t.Context(), path, 0o600, 0); !errors.Is(err, ErrHeld) {
		t.Errorf("second lock, no wait: %v, want ErrHeld", err)
	}
	if _, err := Path(t.Context(), path, 0o600, 3*retry); !errors.Is(err, ErrHeld) {
		t.Errorf("second lock, short bound: %v, want ErrHeld", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*retry)
	defer cancel()
	if _, err := Path(ctx, path, 0o600, Forever); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lock, forever: %v, want the context's deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := Path(t.Context(), path, 0o600, time.Minute)
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	if err := <-got; err != nil {
		t.Errorf("lock after the first let go: %v", err)
	}
}
