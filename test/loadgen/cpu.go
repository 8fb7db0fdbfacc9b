package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture loadgen runs on.
const clockTicks = 100

// procFS reads CPU times from a /proc tree at Root.
type procFS struct{ Root string }

// cpuTimes is CPU time used so far, in clock ticks.
type cpuTimes struct {
	busy     uint64 // the whole machine, all CPUs, not idle
	loadgen  uint64 // this process
	server   uint64 // the processes in the server's process group
	database uint64 // processes named postgres
	at       time.Time
}

// CPU is the CPU a phase of a run used, in cores: CPU-seconds per second
// of wall time. Much in Other means something else ran on the machine.
type CPU struct {
	Seconds     float64 `json:"seconds"` // the wall time measured
	Cores       int     `json:"cores"`
	MachineBusy float64 `json:"machine_busy_cores"`
	Loadgen     float64 `json:"loadgen_cores"`
	Server      float64 `json:"server_cores"`             // eportal, or nginx's master and workers
	Database    float64 `json:"database_cores,omitempty"` // PostgreSQL's processes, whoever they serve
	Other       float64 `json:"other_cores"`              // the kernel's own work and every other process

	// The CPU-seconds used in the time measured, unrounded, for the
	// costs per event.
	loadgenSecs, serverSecs, databaseSecs float64
}

// PerEvent is the CPU one event (an agent cycle, a download) cost, in
// milliseconds of CPU time: what each part of the system spent on n
// events in the time measured.
type PerEvent struct {
	Loadgen  float64 `json:"loadgen_cpu_ms"`
	Server   float64 `json:"server_cpu_ms"`
	Database float64 `json:"database_cpu_ms,omitempty"`
}

// perEvent divides the CPU used among n events; nil for none.
func (c *CPU) perEvent(n int) *PerEvent {
	if c == nil || n <= 0 {
		return nil
	}
	per := func(secs float64) float64 { return math.Round(secs*1e6/float64(n)) / 1000 }
	return &PerEvent{Loadgen: per(c.loadgenSecs), Server: per(c.serverSecs), Database: per(c.databaseSecs)}
}

// snapshot reads the CPU times of the machine, of loadgen, of the
// process groups serverPgids (the server's processes, of each replica),
// and of PostgreSQL. A process that cannot be read (it ended) is skipped.
func (fs procFS) snapshot(serverPgids ...int) (cpuTimes, error) {
	t := cpuTimes{at: time.Now()}
	b, err := os.ReadFile(filepath.Join(fs.Root, "stat"))
	if err != nil {
		return t, err
	}
	if t.busy, err = parseMachineBusy(b); err != nil {
		return t, err
	}
	self := os.Getpid()
	dirs, err := os.ReadDir(fs.Root)
	if err != nil {
		return t, err
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(fs.Root, d.Name(), "stat"))
		if err != nil {
			continue
		}
		st, err := parseProcStat(b)
		if err != nil {
			continue
		}
		switch {
		case pid == self:
			t.loadgen += st.ticks
		case slices.Contains(serverPgids, st.pgrp):
			t.server += st.ticks
		case st.comm == "postgres":
			t.database += st.ticks
		}
	}
	return t, nil
}

// startCPU starts measuring the CPU used by the machine, loadgen, the
// server's processes sp (a server, or a portal's replicas) and (with db)
// PostgreSQL; the function it returns ends the measurement, returning nil
// where /proc cannot be read. Without db, PostgreSQL's processes count as
// other work.
func startCPU(db bool, sp ...*proc) func() *CPU {
	fs := procFS{Root: "/proc"}
	pgids := func() []int {
		var ids []int
		for _, p := range sp {
			ids = append(ids, p.cmd.Process.Pid) // its own process group: see sysProcAttr
		}
		return ids
	}
	a, err := fs.snapshot(pgids()...)
	return func() *CPU {
		if err != nil {
			return nil
		}
		b, err := fs.snapshot(pgids()...)
		if err != nil {
			return nil
		}
		if !db {
			a.database, b.database = 0, 0
		}
		c := cpuBetween(a, b, runtime.NumCPU())
		return &c
	}
}

// cpuBetween is the CPU used from a to b, on cores CPUs.
func cpuBetween(a, b cpuTimes, cores int) CPU {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return CPU{Cores: cores}
	}
	used := func(x, y uint64) float64 {
		if y < x {
			return 0
		}
		return float64(y-x) / clockTicks
	}
	rate := func(x, y uint64) float64 { return round2(used(x, y) / secs) }
	c := CPU{Seconds: round2(secs), Cores: cores, MachineBusy: rate(a.busy, b.busy), Loadgen: rate(a.loadgen, b.loadgen),
		Server: rate(a.server, b.server), Database: rate(a.database, b.database),
		loadgenSecs: used(a.loadgen, b.loadgen), serverSecs: used(a.server, b.server), databaseSecs: used(a.database, b.database)}
	c.Other = max(0, round2(c.MachineBusy-c.Loadgen-c.Server-c.Database))
	return c
}

// parseMachineBusy returns the busy ticks of all CPUs from /proc/stat's
// first line: user, nice, system, irq, softirq and steal (guest time is
// counted in user already; idle and iowait are not busy).
func parseMachineBusy(stat []byte) (uint64, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q is not the cpu totals", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system _idle_ _iowait_ irq softirq steal
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d: %w", i, err)
		}
		busy += n
	}
	return busy, nil
}

// procStat is what loadgen reads of /proc/PID/stat.
type procStat struct {
	comm  string
	pgrp  int
	ticks uint64 // utime + stime
}

// parseProcStat parses /proc/PID/stat. The command name is in
// parentheses and may hold spaces and parentheses itself, so the fields
// are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("proc stat: no command name")
	}
	// After the name: state(3) ppid(4) pgrp(5) ... utime(14) stime(15).
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("proc stat: %d fields after the command name, want 13 or more", len(f))
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return procStat{}, fmt.Errorf("proc stat: pgrp: %w", err)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return procStat{}, fmt.Errorf("proc stat: times: %w", err)
	}
	return procStat{comm: string(b[open+1 : end]), pgrp: pgrp, ticks: utime + stime}, nil
}
