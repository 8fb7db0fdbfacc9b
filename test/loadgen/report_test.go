package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

var cycleReport = &Report{
	Backend:             "postgres",
	SeededServers:       1000000,
	SeedSeconds:         41.27,
	Agents:              1000,
	AgentKey:            "loadgen-agents",
	RegisterSeconds:     2.5,
	RegistrationsPerSec: 400,
	Registration:        Summary{Count: 1000, P50: 61.2, P90: 95.03, P99: 140.881, Max: 201.4},
	Concurrency:         32,
	Pinned:              "server on CPUs 0, loadgen on CPUs 1",
	Cycle:               "real",
	API:                 "run",
	DurationSeconds:     30,
	ElapsedSeconds:      30.02,
	BundleBytes:         262144,
	Cycles:              15012,
	CyclesPerSecond:     500.07,
	Steps: []Step{
		{"index", Summary{Count: 15012, P50: 21.5, P90: 40.2, P99: 70.123, Max: 120}},
		{"verify", Summary{Count: 15012, P50: 0.31, P90: 0.9, P99: 2.5, Max: 9.75}},
		{"bundle", Summary{Count: 1000, P50: 12.25, P90: 30, P99: 55.5, Max: 110}},
		{"checkin", Summary{Count: 1000, P50: 25, P90: 45, P99: 80, Max: 150}},
		{"cycle", Summary{Count: 15012, P50: 62, P90: 101.5, P99: 160.25, Max: 260}},
	},
	CPU:         &CPU{Seconds: 30.02, Cores: 2, MachineBusy: 1.97, Loadgen: 0.81, Server: 0.72, Database: 0.35, Other: 0.09},
	CPUPerCycle: &PerEvent{Loadgen: 1.62, Server: 1.44, Database: 0.7},
}

var throughputReport = &ThroughputReport{
	BundleBytes:     262144,
	Concurrency:     32,
	DurationSeconds: 30,
	Servers: []Throughput{
		{Server: "eportal", Requests: 60000, ElapsedSeconds: 30.01, RequestsPerSecond: 1999.33, MiBPerSecond: 499.83,
			Latency:       Summary{Count: 60000, P50: 14.1, P90: 25, P99: 40.5, Max: 90},
			CPU:           &CPU{Seconds: 30.01, Cores: 2, MachineBusy: 1.99, Loadgen: 1.1, Server: 0.85, Other: 0.04},
			CPUPerRequest: &PerEvent{Loadgen: 0.55, Server: 0.425}},
		{Server: "nginx", Requests: 90000, ElapsedSeconds: 30, RequestsPerSecond: 3000, MiBPerSecond: 750,
			Latency:       Summary{Count: 89998, P50: 9.5, P90: 15, P99: 30, Max: 61},
			CPU:           &CPU{Seconds: 30, Cores: 2, MachineBusy: 1.98, Loadgen: 1.4, Server: 0.5, Other: 0.08},
			CPUPerRequest: &PerEvent{Loadgen: 0.467, Server: 0.167}, Failures: Failures{
				Failed: 2, Samples: []string{"GET /blobs/sha256/ab: got 10 bytes with sha256 cd"}}},
	},
}

func TestReportText(t *testing.T) {
	tests := []struct {
		name   string
		report interface{ writeText(io.Writer) error }
	}{
		{"cycles", cycleReport},
		{"throughput", throughputReport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.report.writeText(&buf); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".txt", buf.Bytes())
			buf.Reset()
			if err := writeJSON(&buf, tt.report); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".json", buf.Bytes())
		})
	}
}

func TestFailureLog(t *testing.T) {
	var l failureLog
	for i := range maxSamples + 5 {
		l.fail(errors.New("index: portal answered 500 Internal Server Error: internal error"))
		l.fail(errors.New("checkin " + strings.Repeat("x", i)))
	}
	l.retry("GET /api/v1/index/5f2c: 503 Service Unavailable")
	got := l.report()
	if got.Failed != 2*(maxSamples+5) || got.Retried != 1 || got.Aborted || got.None() {
		t.Errorf("report = failed %d, retried %d, aborted %v; want %d, 1, false", got.Failed, got.Retried, got.Aborted, 2*(maxSamples+5))
	}
	if len(got.Samples) != maxSamples || got.Samples[0] != "index: portal answered 500 Internal Server Error: internal error" || got.Samples[1] != "checkin " {
		t.Errorf("samples = %q; want %d distinct, first seen first", got.Samples, maxSamples)
	}
	for l.total() < maxFailures {
		l.fail(errors.New("bundle: broken"))
	}
	if got := l.report(); !got.Aborted {
		t.Errorf("after %d failures: aborted false, want true", got.Failed+got.Retried)
	}
	if !(Failures{}).None() {
		t.Error("no failures: None() = false")
	}
}

func TestParseFlags(t *testing.T) {
	const dsn = "postgres://kcare:kcare@127.0.0.1:5432/kcare_test?sslmode=disable"
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for none
		check   func(c *config) bool
	}{
		{"defaults", nil, "", func(c *config) bool {
			return c.db == "sqlite" && c.dsn == "" && c.seed == 10000 && c.agents == 100 && c.concurrency == 8 &&
				c.duration == 10*time.Second && c.bundleSize == 256<<10 && !c.json && !c.nginx &&
				!c.downloadEveryCycle && c.pinned() == "" && c.api == "run"
		}},
		{"postgres", []string{"-db", "postgres", "-dsn", dsn, "-seed", "1000000", "-agents", "1000", "-concurrency", "32", "-duration", "30s", "-json"}, "", func(c *config) bool {
			return c.db == "postgres" && c.dsn == dsn && c.seed == 1000000 && c.agents == 1000 && c.concurrency == 32 && c.duration == 30*time.Second && c.json
		}},
		{"postgres_key_value_dsn", []string{"-db", "postgres", "-dsn", "host=/run/postgresql dbname=kcare_test"}, "", nil},
		{"shared_key", []string{"-shared-key"}, "", func(c *config) bool { return c.sharedKey }},
		{"pinned", []string{"-server-cpus", "0", "-loadgen-cpus", "1"}, "", func(c *config) bool {
			return c.serverCPUs == "0" && c.loadgenCPUs == "1" && c.pinned() == "server on CPUs 0, loadgen on CPUs 1"
		}},
		{"worst_case", []string{"-download-every-cycle"}, "", func(c *config) bool { return c.downloadEveryCycle }},
		{"api_v1", []string{"-api", "v1"}, "", func(c *config) bool { return c.api == "v1" }},
		{"bad_api", []string{"-api", "v2"}, "-api: run or v1", nil},
		{"bad_cpu_list", []string{"-server-cpus", "0-x"}, "-server-cpus", nil},
		{"nginx_ignores_agents", []string{"-nginx", "-agents", "1", "-concurrency", "64"}, "", func(c *config) bool { return c.nginx }},
		{"unknown_db", []string{"-db", "mysql"}, "-db: sqlite or postgres", nil},
		{"postgres_without_dsn", []string{"-db", "postgres", "-dsn", ""}, "needs -dsn", nil},
		{"remote_postgres", []string{"-db", "postgres", "-dsn", "postgres://kcare@db.example.com/kcare"}, "only a database on 127.0.0.1", nil},
		{"fewer_agents_than_workers", []string{"-agents", "10", "-concurrency", "32"}, "-agents", nil},
		{"zero_concurrency", []string{"-concurrency", "0"}, "-concurrency", nil},
		{"short_duration", []string{"-duration", "10ms"}, "-duration", nil},
		{"long_duration", []string{"-duration", "2h"}, "-duration", nil},
		{"negative_seed", []string{"-seed", "-1"}, "-seed", nil},
		{"positional", []string{"extra"}, "unexpected argument", nil},
		{"bad_flag", []string{"-agnets", "5"}, "usage", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KCARE_TEST_POSTGRES", "")
			c, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseFlags(%q) = %v, want a usage error containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q) = %v", tt.args, err)
			}
			if tt.check != nil && !tt.check(c) {
				t.Errorf("parseFlags(%q) = %+v", tt.args, *c)
			}
		})
	}
}

func TestRunUsageExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"help", []string{"-h"}, exitOK},
		{"bad_flag", []string{"-agnets", "5"}, exitUsage},
		{"bad_value", []string{"-db", "mysql"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := run(t.Context(), tt.args, &stdout, &stderr); got != tt.want || stdout.Len() != 0 {
				t.Errorf("run(%q) = %d with %d bytes on stdout; want %d and none", tt.args, got, stdout.Len(), tt.want)
			}
		})
	}
}

// TestTransportCallsOffNotRetries: a request loadgen calls off itself
// (its run is over) is no retried answer; a connection the server refuses
// is.
func TestTransportCallsOffNotRetries(t *testing.T) {
	hold := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hold }))
	defer srv.Close()
	defer close(hold)
	log := &failureLog{}
	c := newHTTPClient(1, log)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/run", nil)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := c.Do(req); err == nil {
		t.Fatal("a request called off answered")
	}
	if r := log.report(); r.Retried != 0 || r.Failed != 0 {
		t.Errorf("after a request called off: %+v, want no failure", r)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := c.Get("http://" + addr + "/api/v1/run"); err == nil {
		t.Fatal("a closed port answered")
	}
	if r := log.report(); r.Retried != 1 {
		t.Errorf("after a refused connection: %+v, want 1 retried", r)
	}
}
