// Package livepatch reads and drives the kernel's livepatch state in
// /sys/kernel/livepatch, the way the kernel selftests' functions.sh does:
// wait for a transition to finish, disable a patch, wait for it to go.
package livepatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/faultpoint"
)

// Sysfs is the livepatch interface of a kernel whose /sys and /proc are
// under Root ("/" for the running kernel, a fake tree in tests).
type Sysfs struct {
	Root string
	// Poll is how often waits look at the kernel; zero means 20ms.
	Poll time.Duration
}

// Patch is one directory under /sys/kernel/livepatch.
type Patch struct {
	Name       string
	Enabled    bool
	Transition bool
}

// Task is a task whose livepatch state is not yet the transition's target.
type Task struct {
	PID   int
	Comm  string
	State int // /proc/PID/patch_state: -1 none, 0 unpatched, 1 patched
}

func (t Task) String() string { return fmt.Sprintf("%s[%d]", t.Comm, t.PID) }

// Errors a caller tells apart.
var (
	ErrUnsupported = errors.New("kernel has no livepatch support (/sys/kernel/livepatch missing)")
	ErrNoPatch     = errors.New("no such livepatch")
	ErrTimeout     = errors.New("timed out")
)

// StallError reports a transition that did not finish within its bound.
type StallError struct {
	Patch string
	Bound time.Duration
	Tasks []Task
}

func (e *StallError) Error() string {
	names := make([]string, len(e.Tasks))
	for i, t := range e.Tasks {
		names[i] = t.String()
	}
	s := fmt.Sprintf("transition of %s did not finish within %s", e.Patch, e.Bound)
	if len(names) > 0 {
		s += "; stalled tasks: " + strings.Join(names, ", ")
	}
	return s
}

func (e *StallError) Unwrap() error { return ErrTimeout }

func (s Sysfs) dir() string { return filepath.Join(s.Root, "sys/kernel/livepatch") }

func (s Sysfs) poll() time.Duration {
	if s.Poll > 0 {
		return s.Poll
	}
	return 20 * time.Millisecond
}

// Supported reports whether the kernel has livepatch support.
func (s Sysfs) Supported() bool {
	fi, err := os.Stat(s.dir())
	return err == nil && fi.IsDir()
}

// Patches lists the livepatches the kernel has, sorted by name.
func (s Sysfs) Patches() ([]Patch, error) {
	ents, err := os.ReadDir(s.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrUnsupported
	}
	if err != nil {
		return nil, fmt.Errorf("list livepatches: %w", err)
	}
	var out []Patch
	for _, e := range ents {
		p, err := s.Patch(e.Name())
		if errors.Is(err, ErrNoPatch) {
			continue // went away while we looked
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Patch reads the state of the livepatch called name.
func (s Sysfs) Patch(name string) (Patch, error) {
	if !s.Supported() {
		return Patch{}, ErrUnsupported
	}
	d := filepath.Join(s.dir(), name)
	enabled, err := readBool(filepath.Join(d, "enabled"))
	if errors.Is(err, os.ErrNotExist) {
		return Patch{}, fmt.Errorf("livepatch %s: %w", name, ErrNoPatch)
	}
	if err != nil {
		return Patch{}, fmt.Errorf("livepatch %s: %w", name, err)
	}
	trans, err := readBool(filepath.Join(d, "transition"))
	if errors.Is(err, os.ErrNotExist) {
		return Patch{}, fmt.Errorf("livepatch %s: %w", name, ErrNoPatch)
	}
	if err != nil {
		return Patch{}, fmt.Errorf("livepatch %s: %w", name, err)
	}
	return Patch{Name: name, Enabled: enabled, Transition: trans}, nil
}

// Exists reports whether the livepatch called name is present.
func (s Sysfs) Exists(name string) bool {
	_, err := os.Stat(filepath.Join(s.dir(), name))
	return err == nil
}

// Disable writes 0 to the patch's enabled file. During a transition this
// reverses it.
func (s Sysfs) Disable(name string) error {
	f := filepath.Join(s.dir(), name, "enabled")
	if err := os.WriteFile(f, []byte("0"), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("disable livepatch %s: %w", name, ErrNoPatch)
		}
		return fmt.Errorf("disable livepatch %s: %w", name, err)
	}
	return nil
}

// WaitTransition waits up to bound for the patch's transition to finish.
// On timeout it returns a *StallError naming the tasks not yet switched.
func (s Sysfs) WaitTransition(ctx context.Context, name string, bound time.Duration) error {
	var last Patch
	err := s.wait(ctx, bound, func() (bool, error) {
		p, err := s.Patch(name)
		if err != nil {
			return false, err
		}
		last = p
		if p.Transition {
			faultpoint.Hit(faultpoint.TransitionWait)
		}
		return !p.Transition, nil
	})
	if errors.Is(err, ErrTimeout) {
		target := 0
		if last.Enabled {
			target = 1
		}
		tasks, _ := s.StalledTasks(target)
		return &StallError{Patch: name, Bound: bound, Tasks: tasks}
	}
	if err != nil {
		return fmt.Errorf("waiting up to %s for transition of %s to finish: %w", bound, name, err)
	}
	return nil
}

// WaitGone waits up to bound for the patch's directory to vanish, which
// the kernel does once a disabled or replaced patch is freed.
func (s Sysfs) WaitGone(ctx context.Context, name string, bound time.Duration) error {
	err := s.wait(ctx, bound, func() (bool, error) { return !s.Exists(name), nil })
	if err != nil {
		return fmt.Errorf("waiting up to %s for livepatch %s to go away: %w", bound, name, err)
	}
	return nil
}

// wait calls done until it reports true or fails, or bound has passed.
// It looks again after 1 ms, then at intervals doubling up to the poll
// interval: a transition that takes the kernel a few milliseconds is seen
// done in a few, not a whole interval later.
func (s Sysfs) wait(ctx context.Context, bound time.Duration, done func() (bool, error)) error {
	deadline := time.Now().Add(bound)
	pause := min(time.Millisecond, s.poll())
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return ErrTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, s.poll())
	}
}

// StalledTasks lists the tasks whose /proc/PID/patch_state is neither the
// target state nor -1 (not in a transition).
func (s Sysfs) StalledTasks(target int) ([]Task, error) {
	proc := filepath.Join(s.Root, "proc")
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	var out []Task
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readInt(filepath.Join(proc, e.Name(), "patch_state"))
		if err != nil || st == -1 || st == target {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
		out = append(out, Task{PID: pid, Comm: strings.TrimSpace(string(comm)), State: st})
	}
	return out, nil
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return ParseInt(string(b))
}

func readBool(path string) (bool, error) {
	n, err := readInt(path)
	if err != nil {
		return false, err
	}
	return n != 0, nil
}

// ParseInt parses the text of a sysfs or procfs number file.
func ParseInt(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("parse %q: not a number", s)
	}
	return n, nil
}
