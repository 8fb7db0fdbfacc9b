package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinSelf keeps loadgen on cpus: every thread it has now (threads made
// later inherit their maker's CPUs), and as many Go threads running at
// once as there are CPUs.
func pinSelf(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	// A thread not pinned yet may start another while the list is
	// read: go over it until a pass finds no thread it had not seen.
	done := map[int]bool{}
	for pass := 0; ; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("pin loadgen: %w", err)
		}
		fresh := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pin loadgen to CPUs %v: %w", cpus, err)
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			break
		}
		if pass == 10 {
			return fmt.Errorf("pin loadgen to CPUs %v: its threads kept multiplying", cpus)
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}
