package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    procStat
		wantErr bool
	}{
		{"postgres", "10508 (postgres) S 1 10508 10508 0 -1 4194304 15348 1716506 0 23 7 61 15496 3558 20 0 1 0 149551 222470144 7579 18446744073709551615 0 0 0 0 0\n",
			procStat{comm: "postgres", pgrp: 10508, ticks: 68}, false},
		{"eportal", "29495 (eportal) S 29493 29495 19983 0 -1 4194304 101 0 0 0 2500 750 0 0 20 0 8 0 247379 3133440 393\n",
			procStat{comm: "eportal", pgrp: 29495, ticks: 3250}, false},
		{"name_with_spaces_and_parens", "77 (nginx: (worker) x) S 76 76 76 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1\n",
			procStat{comm: "nginx: (worker) x", pgrp: 76, ticks: 15}, false},
		{"no_name", "77 nginx S 76 76", procStat{}, true},
		{"short", "77 (nginx) S 76 76 76\n", procStat{}, true},
		{"bad_times", "77 (nginx) S 76 76 76 0 -1 0 0 0 0 0 ten 5 0 0\n", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseProcStat = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseMachineBusy(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    uint64
		wantErr bool
	}{
		{"debian_12", "cpu  282805 0 64903 136968 4400 0 1048 2746 0 0\ncpu0 141000 0 32000 68000 2200 0 500 1300 0 0\n", 282805 + 64903 + 1048 + 2746, false},
		{"old_kernel_eight_fields", "cpu  100 1 20 500 3 4 5 6\n", 100 + 1 + 20 + 4 + 5 + 6, false},
		{"not_cpu_totals", "cpu0 1 2 3 4 5 6 7 8 9 10\n", 0, true},
		{"too_short", "cpu  1 2 3\n", 0, true},
		{"not_a_number", "cpu  x 0 64903 136968 4400 0 1048 2746 0 0\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMachineBusy([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseMachineBusy = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestSnapshot reads a fake /proc: loadgen itself, the server's process
// group (master and worker), two PostgreSQL processes and a stranger.
func TestSnapshot(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stat := func(pid int, comm string, pgrp, utime, stime int) string {
		return fmt.Sprintf("%d (%s) S 1 %d %d 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0 1 1 1\n", pid, comm, pgrp, pgrp, utime, stime)
	}
	self := os.Getpid()
	write("stat", "cpu  1000 0 200 5000 10 0 30 4 0 0\n")
	write(fmt.Sprintf("%d/stat", self), stat(self, "loadgen", self, 300, 20))
	write("500/stat", stat(500, "nginx", 500, 1, 1))
	write("501/stat", stat(501, "nginx", 500, 90, 40))
	write("600/stat", stat(600, "postgres", 600, 70, 5))
	write("601/stat", stat(601, "postgres", 600, 20, 5))
	write("700/stat", stat(700, "sshd", 700, 9, 9))
	write("self/stat", stat(self, "loadgen", self, 300, 20)) // not a pid: skipped
	write("800/status", "a process that ended between listing and reading\n")

	got, err := procFS{Root: root}.snapshot(500)
	if err != nil {
		t.Fatal(err)
	}
	want := cpuTimes{busy: 1234, loadgen: 320, server: 132, database: 100}
	got.at = time.Time{}
	if got != want {
		t.Errorf("snapshot = %+v, want %+v", got, want)
	}
}

func TestCPUBetween(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	a := cpuTimes{busy: 1000, loadgen: 100, server: 200, database: 50, at: t0}
	b := cpuTimes{busy: 1600, loadgen: 350, server: 400, database: 50, at: t0.Add(3 * time.Second)}
	want := CPU{Seconds: 3, Cores: 2, MachineBusy: 2, Loadgen: 0.83, Server: 0.67, Other: 0.5,
		loadgenSecs: 2.5, serverSecs: 2}
	got := cpuBetween(a, b, 2)
	if got != want {
		t.Errorf("cpuBetween = %+v, want %+v", got, want)
	}
	// 2.5 and 2 CPU-seconds over 1,000 cycles.
	if per := got.perEvent(1000); *per != (PerEvent{Loadgen: 2.5, Server: 2}) {
		t.Errorf("perEvent(1000) = %+v, want loadgen 2.5 ms, server 2 ms", *per)
	}
	if per := got.perEvent(0); per != nil {
		t.Errorf("perEvent(0) = %+v, want nil", *per)
	}
	if got := cpuBetween(a, a, 2); got != (CPU{Cores: 2}) {
		t.Errorf("cpuBetween over no time = %+v, want zeros", got)
	}
}

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"1", []int{1}, false},
		{"0-3", []int{0, 1, 2, 3}, false},
		{"2,0-1,2", []int{0, 1, 2}, false},
		{"", nil, true},
		{"x", nil, true},
		{"3-1", nil, true},
		{"0-", nil, true},
		{"-1", nil, true},
		{"1024", nil, true},
	}
	for _, tt := range tests {
		got, err := parseCPUList(tt.in)
		if (err != nil) != tt.wantErr || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
