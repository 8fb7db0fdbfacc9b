package main

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// maxCPU bounds the CPU numbers a list may name.
const maxCPU = 1023

// parseCPUList parses a CPU list as taskset -c and the kernel write
// them: numbers and ranges separated by commas ("1", "0-3", "0,2-3").
// It returns the CPUs in ascending order, each once.
func parseCPUList(s string) ([]int, error) {
	if s == "" {
		return nil, fmt.Errorf("empty CPU list")
	}
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > maxCPU {
			return nil, fmt.Errorf("CPU list %q: bad CPU %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > maxCPU {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			seen[c] = true
		}
	}
	var out []int
	for c := 0; c <= maxCPU; c++ {
		if seen[c] {
			out = append(out, c)
		}
	}
	return out, nil
}

// pinned is what the report says of pinning: "" when nothing was
// pinned.
func (c *config) pinned() string {
	var parts []string
	if c.serverCPUs != "" {
		parts = append(parts, "server on CPUs "+c.serverCPUs)
	}
	if c.loadgenCPUs != "" {
		parts = append(parts, "loadgen on CPUs "+c.loadgenCPUs)
	}
	return strings.Join(parts, ", ")
}

// onCPUs returns cmd run under taskset -c cpus, or cmd itself when cpus
// is "".
func onCPUs(cmd *exec.Cmd, cpus string) *exec.Cmd {
	if cpus == "" {
		return cmd
	}
	tp, err := exec.LookPath("taskset")
	if err != nil {
		tp = "taskset" // Start fails and says so
	}
	c := exec.Command(tp, append([]string{"-c", cpus}, cmd.Args...)...)
	c.Env, c.Dir = cmd.Env, cmd.Dir
	return c
}
