// Package flock takes exclusive flock(2) locks that several processes
// share: the agent's one-kcarectl-at-a-time lock, the mirror's one sync at a
// time, and the caches of kernel packages and prepared sources. Every wait
// is bounded and gives way to its context.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrHeld means another process held the lock for longer than the caller
// would wait.
var ErrHeld = errors.New("held by another process")

// Forever is a bound that waits until the context is done.
const Forever time.Duration = -1

// retry is how often a held lock is tried again.
const retry = 50 * time.Millisecond

// Lock takes an exclusive lock on f. It tries once when bound is 0, waits
// up to bound otherwise (Forever: until ctx is done), and returns an error
// matching ErrHeld when the lock stayed held, or ctx's error. Closing f lets
// the lock go.
func Lock(ctx context.Context, f *os.File, bound time.Duration) error {
	var deadline time.Time
	if bound > 0 {
		deadline = time.Now().Add(bound)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, unix.EWOULDBLOCK):
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		case bound == 0 || bound > 0 && time.Now().After(deadline):
			return fmt.Errorf("%s: %w", f.Name(), ErrHeld)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: %w", f.Name(), ctx.Err())
		case <-time.After(retry):
		}
	}
}

// Path opens path (creating it with perm) and locks it as Lock does; unlock
// closes it.
func Path(ctx context.Context, path string, perm os.FileMode, bound time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, perm)
	if err != nil {
		return nil, err
	}
	if err := Lock(ctx, f, bound); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
