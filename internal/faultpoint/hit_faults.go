//go:build faults

package faultpoint

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	mu      sync.Mutex
	handler func(point string)
	fired   = map[string]bool{}
)

// Handle makes Hit call f at every point instead of reading Env, for the
// in-process tests of a package; the returned function restores Env.
func Handle(f func(point string)) (restore func()) {
	mu.Lock()
	defer mu.Unlock()
	old := handler
	handler = f
	return func() {
		mu.Lock()
		defer mu.Unlock()
		handler = old
	}
}

// Hit acts at point as Env, or the function given to Handle, says.
func Hit(point string) {
	mu.Lock()
	h := handler
	mu.Unlock()
	if h != nil {
		h(point)
		return
	}
	spec := os.Getenv(Env)
	name, action, ok := strings.Cut(spec, ":")
	if !ok || name != point {
		return
	}
	mu.Lock()
	if fired[point] {
		mu.Unlock()
		return
	}
	fired[point] = true
	mu.Unlock()
	switch {
	case action == "kill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		block()
	case action == "hang":
		line := Marker + point + "\n"
		if f, err := os.OpenFile("/dev/console", os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
			f.WriteString(line)
			f.Close()
		}
		os.Stderr.WriteString(line)
		block()
	case strings.HasPrefix(action, "sleep="):
		d, err := time.ParseDuration(strings.TrimPrefix(action, "sleep="))
		if err != nil {
			panic(fmt.Sprintf("%s=%s: %v", Env, spec, err))
		}
		time.Sleep(d)
	default:
		panic(fmt.Sprintf("%s=%s: unknown action %q (kill, hang or sleep=DURATION)", Env, spec, action))
	}
}

// block never returns. It sleeps rather than selecting on nothing, which
// the runtime would take for a deadlock.
func block() {
	for {
		time.Sleep(time.Hour)
	}
}
