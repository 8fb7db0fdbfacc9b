package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portalclient"
)

// crashReport is what loadgen -kill-every -json reports (test/loadgen
// CrashReport).
type crashReport struct {
	Kills   int `json:"kills"`
	Restart struct {
		P50 float64 `json:"p50_ms"`
		Max float64 `json:"max_ms"`
	} `json:"restart"`
	StoreOpened       bool     `json:"store_opened"`
	Integrity         string   `json:"integrity"`
	Registrations     int      `json:"registrations_acknowledged"`
	Checkins          int      `json:"checkins_acknowledged"`
	LostRegistrations int      `json:"registrations_lost"`
	LostCheckins      int      `json:"checkins_lost"`
	Duplicates        int      `json:"duplicate_servers"`
	Unacknowledged    int      `json:"unacknowledged_registrations_stored"`
	Failed            int      `json:"requests_failed"`
	Samples           []string `json:"samples"`
}

// TestPortalKilledUnderLoad runs loadgen against eportal serve and kills
// eportal with SIGKILL every two seconds, starting it again each time, on
// SQLite and on PostgreSQL (a private server): every registration and
// check-in eportal acknowledged is in the store after the last kill, the
// store opens cleanly (SQLite's integrity check says ok), and no
// registration is stored twice.
func TestPortalKilledUnderLoad(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			loadgen, eportal := hostBinary(t, "loadgen"), hostBinary(t, "eportal")
			args := []string{"-db", db, "-eportal", eportal, "-seed", "10000", "-agents", "64", "-concurrency", "8",
				"-duration", "10s", "-kill-every", "2s", "-json"}
			if db == "postgres" {
				args = append(args, "-dsn", startPostgres(t).DSN())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, loadgen, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var r crashReport
			if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
				t.Fatalf("loadgen: %v, %v\n%s%s", err, jerr, stdout.String(), stderr.String())
			}
			if err != nil {
				t.Errorf("loadgen: %v\n%s", err, tail(stderr.String(), 20))
			}
			if r.Kills < 4 || !r.StoreOpened || r.Registrations <= 64 || r.Checkins == 0 {
				t.Errorf("%d kills, store opened %v, %d registrations and %d check-ins acknowledged; want at least 4 kills, the store opened, some of each",
					r.Kills, r.StoreOpened, r.Registrations, r.Checkins)
			}
			if r.LostRegistrations != 0 || r.LostCheckins != 0 || r.Duplicates != 0 {
				t.Errorf("lost %d registrations and %d check-ins, %d registrations stored twice; want none: %q",
					r.LostRegistrations, r.LostCheckins, r.Duplicates, r.Samples)
			}
			if db == "sqlite" && r.Integrity != "ok" {
				t.Errorf("SQLite integrity check after the last kill: %q", r.Integrity)
			}
			t.Logf("FIGURE kill -9 under load (%s): %d kills; restart to /healthz p50 %.0f ms, max %.0f ms; "+
				"%d registrations and %d check-ins acknowledged, none lost; %d requests failed across the kills; "+
				"%d registrations stored without their answer reaching the agent",
				db, r.Kills, r.Restart.P50, r.Restart.Max, r.Registrations, r.Checkins, r.Failed, r.Unacknowledged)
		})
	}
}

// TestSQLiteBusy runs `eportal server clean` over a million seeded
// servers, a long write transaction, while agents check in and fetch
// their index from eportal serve on the same SQLite database: every
// agent request is answered 200. Their latency during the command, and
// the command's duration, are reported, not asserted.
func TestSQLiteBusy(t *testing.T) {
	p := newHostPortal(t, t.TempDir(), "")
	const seeded = 1_000_000
	ctx := context.Background()
	start := time.Now()
	st, err := store.Open(ctx, p.data, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddKey(ctx, &store.Key{Key: "seeded", Feed: apitype.MainFeed, Note: "faults"}); err != nil {
		t.Fatal(err)
	}
	if err := store.SeedServers(ctx, st, "seeded", seeded); err != nil {
		t.Fatal(err)
	}
	st.Close()
	t.Logf("seeded %d servers in %s", seeded, time.Since(start).Round(time.Millisecond))
	p.start()

	const workers = 8
	agents := make([]*portalclient.Client, workers)
	for i := range agents {
		agents[i] = p.register(fmt.Sprintf("busy-%d.example.net", i))
	}
	type sample struct {
		at      time.Time
		latency time.Duration
		err     error
		what    string
	}
	var mu sync.Mutex
	var samples []sample
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range agents {
		c.HTTP = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{Proxy: nil}}
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				what := "index"
				t0 := time.Now()
				var err error
				if i%2 == 0 {
					_, _, err = c.Index(ctx, fakekernel.BuildID, "", "")
				} else {
					what = "check-in"
					err = c.CheckIn(ctx, apitype.CheckIn{Hostname: "busy.example.net", Release: fakekernel.Release,
						BuildID: fakekernel.BuildID, Level: 0, EffectiveRelease: fakekernel.Release, Result: "ok", AgentVersion: "faults"})
				}
				mu.Lock()
				samples = append(samples, sample{at: t0, latency: time.Since(t0), err: err, what: what})
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	time.Sleep(2 * time.Second)
	cleanStart := time.Now()
	out := p.eportal("", "server", "clean", "--inactive", "1")
	cleanEnd := time.Now()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	var during, before []time.Duration
	byWhat := map[string][]time.Duration{}
	for _, s := range samples {
		if s.err != nil {
			t.Errorf("%s at %s into the run: %v", s.what, s.at.Sub(cleanStart).Round(time.Millisecond), s.err)
			continue
		}
		switch {
		case s.at.Before(cleanStart):
			before = append(before, s.latency)
		case s.at.Before(cleanEnd):
			during = append(during, s.latency)
			byWhat[s.what] = append(byWhat[s.what], s.latency)
		}
	}
	if !strings.HasSuffix(out, " servers deleted") {
		t.Errorf("eportal server clean: %q", out)
	}
	if len(during) == 0 {
		t.Errorf("no agent request was made while the clean ran")
	}
	b, d, ix, ci := summary(before), summary(during), summary(byWhat["index"]), summary(byWhat["check-in"])
	t.Logf("FIGURE sqlite busy: eportal server clean (%s) took %s over %d seeded servers; agent requests before: p50 %s, max %s; "+
		"during: %d requests, p50 %s, p99 %s, max %s (index p50 %s max %s; check-in p50 %s max %s)",
		out, cleanEnd.Sub(cleanStart).Round(time.Millisecond), seeded, b.p50, b.max, d.n, d.p50, d.p99, d.max, ix.p50, ix.max, ci.p50, ci.max)
}
