package faults_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The phases of TestPostgresRestart.
const (
	phaseUp        = iota // PostgreSQL up
	phaseStopping         // pg_ctl stop under way
	phaseDown             // PostgreSQL stopped
	phaseStarting         // pg_ctl start under way
	phaseRestarted        // PostgreSQL up again
)

type answer struct {
	phase      int
	code       int // 0: no answer
	retryAfter string
	latency    time.Duration
	err        string
	at         time.Time
}

// TestPostgresRestart stops the portal's PostgreSQL (a private server)
// under load from agents fetching their index, and starts it again.
// While it is down, every request is answered 503 with Retry-After; once
// it is back, requests succeed again, with no restart of eportal. The
// time from PostgreSQL accepting connections to the first success, and
// the latency of the 503 answers, are reported, not asserted.
func TestPostgresRestart(t *testing.T) {
	pg := startPostgres(t)
	p := newHostPortal(t, t.TempDir(), pg.DSN())
	p.start()
	pid := p.pid()
	const workers = 8
	var agents = make([]*struct{ id, secret string }, workers)
	for i := range agents {
		c := p.register(fmt.Sprintf("pg-restart-%d.example.net", i))
		agents[i] = &struct{ id, secret string }{c.ServerID, c.Secret}
	}

	var phase atomic.Int32
	var mu sync.Mutex
	var answers []answer
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for _, a := range agents {
		wg.Go(func() {
			c := p.client()
			c.ServerID, c.Secret = a.id, a.secret
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := indexRequest(context.Background(), p.url(), c)
				ph := int(phase.Load())
				start := time.Now()
				resp, err := client.Do(req)
				ans := answer{phase: ph, latency: time.Since(start), at: time.Now()}
				if err != nil {
					ans.err = err.Error()
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ans.code, ans.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
				}
				if ph2 := int(phase.Load()); ph2 != ph {
					ans.phase = phaseStopping // straddled a change: counted with no phase
				}
				mu.Lock()
				answers = append(answers, ans)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	time.Sleep(2 * time.Second)
	phase.Store(phaseStopping)
	pg.stop()
	phase.Store(phaseDown)
	time.Sleep(3 * time.Second)
	phase.Store(phaseStarting)
	pg.start()
	up := time.Now()
	phase.Store(phaseRestarted)
	var firstOK time.Time
	for deadline := time.Now().Add(60 * time.Second); firstOK.IsZero() && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		for _, a := range answers {
			if a.phase == phaseRestarted && a.code == http.StatusOK && (firstOK.IsZero() || a.at.Before(firstOK)) {
				firstOK = a.at
			}
		}
		mu.Unlock()
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	if firstOK.IsZero() {
		t.Fatalf("no request succeeded within 60s of PostgreSQL's restart")
	}
	var down []time.Duration
	byPhase := map[int]map[string]int{}
	bad := map[string]int{}
	for _, a := range answers {
		what := fmt.Sprintf("%d Retry-After=%q", a.code, a.retryAfter)
		if a.err != "" {
			what = "error: " + a.err
		}
		if byPhase[a.phase] == nil {
			byPhase[a.phase] = map[string]int{}
		}
		byPhase[a.phase][what]++
		switch {
		case a.phase == phaseUp && a.code != http.StatusOK:
			bad["PostgreSQL up: "+what]++
		case a.phase == phaseDown:
			if a.code != http.StatusServiceUnavailable || a.retryAfter != "5" {
				bad["PostgreSQL down: "+what+"; want 503 with Retry-After 5"]++
			}
			down = append(down, a.latency)
		case a.phase == phaseRestarted && a.at.After(firstOK) && a.code != http.StatusOK:
			bad["PostgreSQL back, after the first success: "+what]++
		case a.code != http.StatusOK && a.code != http.StatusServiceUnavailable:
			bad[fmt.Sprintf("phase %d: %s; want 200 or 503", a.phase, what)]++
		}
	}
	for what, n := range bad {
		t.Errorf("%d answers: %s", n, what)
	}
	if len(down) == 0 {
		t.Errorf("no request was answered while PostgreSQL was down")
	}
	if p.pid() != pid {
		t.Errorf("eportal serve was restarted")
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("eportal serve is gone: %v", err)
	}
	s := summary(down)
	t.Logf("answers by phase (0 up, 1 changing, 2 down, 4 back): %v", byPhase)
	t.Logf("FIGURE postgres restart: first success %s after PostgreSQL accepted connections again; "+
		"%d answers while down, latency p50 %s, p99 %s, max %s", firstOK.Sub(up).Round(time.Millisecond), s.n, s.p50, s.p99, s.max)
}
