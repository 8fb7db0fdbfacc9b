package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portalclient"
)

// CrashReport is the result of a run with -kill-every: the agents' cycles
// and new registrations went on while loadgen killed eportal serve with
// SIGKILL and started it again; then every registration and check-in the
// portal had acknowledged was looked up in its store. Its JSON field
// names are stable; fields are only added.
type CrashReport struct {
	Backend         string  `json:"backend"`
	Replicas        int     `json:"replicas,omitempty"` // behind haproxy when more than one; a kill takes one
	Concurrency     int     `json:"concurrency"`
	DurationSeconds float64 `json:"duration_seconds"`
	Kills           int     `json:"kills"`
	// Restart is how long eportal took from its start to answering
	// /healthz again after each kill.
	Restart Summary `json:"restart"`
	// StoreOpened says the store opened after the last kill, and for
	// SQLite that PRAGMA integrity_check said ok.
	StoreOpened bool   `json:"store_opened"`
	Integrity   string `json:"integrity,omitempty"`
	// What the portal acknowledged, and what of it the store had lost.
	Registrations     int `json:"registrations_acknowledged"`
	Checkins          int `json:"checkins_acknowledged"`
	LostRegistrations int `json:"registrations_lost"`
	LostCheckins      int `json:"checkins_lost"`
	// Duplicates are registrations stored more than once: each attempt
	// has a hostname of its own. Unacknowledged are attempts that failed
	// (their answer lost to a kill) but whose server was stored.
	Duplicates     int `json:"duplicate_servers"`
	Unacknowledged int `json:"unacknowledged_registrations_stored"`
	// Failed counts the requests that failed for the kills.
	Failed  int      `json:"requests_failed"`
	Samples []string `json:"samples,omitempty"`
}

// ok reports whether nothing acknowledged was lost and the store is sound.
func (r *CrashReport) ok() bool {
	return r.StoreOpened && r.LostRegistrations == 0 && r.LostCheckins == 0 && r.Duplicates == 0 &&
		(r.Integrity == "" || r.Integrity == "ok") && r.Kills > 0
}

func (r *CrashReport) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "backend\t%s\n", r.Backend)
	if r.Replicas > 1 {
		fmt.Fprintf(tw, "replicas\t%d behind haproxy; each kill takes one\n", r.Replicas)
	}
	fmt.Fprintf(tw, "kills\t%d in %ss, %d workers\n", r.Kills, num(r.DurationSeconds), r.Concurrency)
	fmt.Fprintf(tw, "restart to /healthz\tp50 %s ms, max %s ms\n", msText(r.Restart.P50), msText(r.Restart.Max))
	fmt.Fprintf(tw, "store after the last kill\topened %v, integrity %q\n", r.StoreOpened, r.Integrity)
	fmt.Fprintf(tw, "registrations\t%d acknowledged, %d lost, %d stored twice, %d unacknowledged stored\n",
		r.Registrations, r.LostRegistrations, r.Duplicates, r.Unacknowledged)
	fmt.Fprintf(tw, "check-ins\t%d acknowledged, %d lost\n", r.Checkins, r.LostCheckins)
	fmt.Fprintf(tw, "requests failed\t%d\n", r.Failed)
	for _, s := range r.Samples {
		fmt.Fprintf(tw, "\t%s\n", s)
	}
	return tw.Flush()
}

// acks records what the portal acknowledged. It is safe for concurrent use.
type acks struct {
	mu       sync.Mutex
	regs     map[string]string // server id: the hostname it registered with
	attempts map[string]bool   // every hostname a registration was tried with
	checkins map[string][]int  // server id: the sequence numbers of its check-ins
}

// crashResult is the check-in result that carries an agent's sequence
// number, so that each acknowledged check-in can be found in the history.
func crashResult(seq int) string { return fmt.Sprintf("ok loadgen-seq=%d", seq) }

// runCrash registers the agents, then runs their cycles, and a new
// registration every fifth cycle of each worker, for cfg.duration while
// eportal is killed every cfg.killEvery; then kills it once more and
// checks the store against what was acknowledged.
func runCrash(ctx context.Context, cfg *config, p *portal, logf func(string, ...any)) (*CrashReport, error) {
	fails := &failureLog{}
	hc := newHTTPClient(cfg.concurrency, fails)
	defer hc.CloseIdleConnections()
	logf("registering %d agents under key %s, %d at a time", cfg.agents, agentKey, cfg.concurrency)
	agents, _, _, err := registerAgents(ctx, p.url, agentKey, hc, p.keys, cfg.agents, cfg.concurrency)
	if err != nil {
		return nil, err
	}
	a := &acks{regs: map[string]string{}, attempts: map[string]bool{}, checkins: map[string][]int{}}
	for _, ag := range agents {
		a.regs[ag.c.ServerID] = ag.hostname
		a.attempts[ag.hostname] = true
	}

	var failed atomic.Int64
	var restarts []time.Duration
	stop := make(chan struct{})
	killed := make(chan error, 1)
	go func() {
		t := time.NewTicker(cfg.killEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				killed <- nil
				return
			case <-t.C:
			}
			d, err := p.killAndRestart(ctx)
			if err != nil {
				killed <- err
				return
			}
			restarts = append(restarts, d)
			logf("killed a replica of eportal serve (SIGKILL); it answered again %s after its start", d.Round(time.Millisecond))
		}
	}()

	logf("running agent cycles from %d workers for %s, killing eportal every %s", cfg.concurrency, cfg.duration, cfg.killEvery)
	var regSeq atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range cfg.concurrency {
		var own []*agent
		for i := w; i < len(agents); i += cfg.concurrency {
			own = append(own, agents[i])
		}
		wg.Go(func() {
			for j := 0; time.Since(start) < cfg.duration && ctx.Err() == nil; j++ {
				if j%5 == 4 {
					host := fmt.Sprintf("loadgen-crash-%07d.example.net", regSeq.Add(1))
					a.mu.Lock()
					a.attempts[host] = true
					a.mu.Unlock()
					c := &portalclient.Client{PatchServer: p.url, HTTP: hc, UserAgent: userAgent, Backoff: retryBackoff}
					id, _, err := c.Register(ctx, agentKey, host)
					if err != nil {
						failed.Add(1)
						fails.fail(fmt.Errorf("register: %w", err))
						continue
					}
					a.mu.Lock()
					a.regs[id] = host
					a.mu.Unlock()
					continue
				}
				ag := own[j%len(own)]
				ag.seq++
				seq := ag.seq
				ag.result = crashResult(seq)
				if err := ag.cycle(ctx, &recorder{}, cycleOptions{v1: cfg.api == "v1"}); err != nil {
					failed.Add(1)
					fails.fail(err)
					continue
				}
				a.mu.Lock()
				a.checkins[ag.c.ServerID] = append(a.checkins[ag.c.ServerID], seq)
				a.mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-killed; err != nil {
		return nil, err
	}
	// The last word is a crash too.
	p.kill()
	r := &CrashReport{Backend: cfg.db, Replicas: len(p.replicas), Concurrency: cfg.concurrency, DurationSeconds: cfg.duration.Seconds(),
		Kills: len(restarts) + 1, Restart: summarize(restarts), Failed: int(failed.Load())}
	if err := checkAcks(ctx, p, a, r); err != nil {
		return nil, err
	}
	r.Samples = append(r.Samples, fails.report().Samples...)
	return r, nil
}

// checkAcks opens the store after the last kill and looks up every
// acknowledged registration and check-in.
func checkAcks(ctx context.Context, p *portal, a *acks, r *CrashReport) error {
	st, err := store.Open(ctx, p.data, p.dsn)
	if err != nil {
		r.Samples = append(r.Samples, "store: "+err.Error())
		return nil
	}
	defer st.Close()
	r.StoreOpened = true
	if p.dsn == "" {
		r.Integrity, err = sqliteIntegrity(ctx, filepath.Join(p.data, store.DBFile))
		if err != nil {
			return err
		}
	}
	r.Registrations = len(a.regs)
	for id, host := range a.regs {
		if _, err := st.Server(ctx, id); errors.Is(err, store.ErrNotFound) {
			r.LostRegistrations++
			r.Samples = append(r.Samples, fmt.Sprintf("lost: registration of %s (%s)", host, id))
		} else if err != nil {
			return err
		}
	}
	ids := make([]string, 0, len(a.checkins))
	for id := range a.checkins {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		hist, err := st.CheckinHistory(ctx, id, 0)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, c := range hist {
			have[c.Result] = true
		}
		for _, seq := range a.checkins[id] {
			r.Checkins++
			if !have[crashResult(seq)] {
				r.LostCheckins++
				r.Samples = append(r.Samples, fmt.Sprintf("lost: check-in %d of server %s", seq, id))
			}
		}
	}
	servers, err := st.Servers(ctx, store.ServerFilter{Key: agentKey})
	if err != nil {
		return err
	}
	acked := map[string]bool{}
	for _, host := range a.regs {
		acked[host] = true
	}
	byHost := map[string]int{}
	for _, s := range servers {
		byHost[s.Hostname]++
	}
	for host, n := range byHost {
		if n > 1 {
			r.Duplicates += n - 1
			r.Samples = append(r.Samples, fmt.Sprintf("registered %d times: %s", n, host))
		}
		if !acked[host] && a.attempts[host] {
			r.Unacknowledged++
		}
	}
	return nil
}

// sqliteIntegrity runs PRAGMA integrity_check on the database at path.
func sqliteIntegrity(ctx context.Context, path string) (string, error) {
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		return "", err
	}
	defer db.Close()
	var res []string
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return "", fmt.Errorf("integrity check of %s: %w", path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return "", err
		}
		res = append(res, s)
	}
	return strings.Join(res, "; "), rows.Err()
}

// kill kills every replica of eportal serve with SIGKILL and waits for
// them to be gone.
func (p *portal) kill() {
	for _, r := range p.replicas {
		r.kill()
	}
}

// kill kills the replica's eportal serve with SIGKILL and waits for it to
// be gone.
func (r *replica) kill() {
	if !r.serve.exited() {
		r.serve.cmd.Process.Kill()
		<-r.serve.done
	}
}

// killAndRestart kills a replica of eportal serve (each in turn) with
// SIGKILL and starts it again on the same address and store; it returns
// how long the new one took to answer /healthz.
func (p *portal) killAndRestart(ctx context.Context) (time.Duration, error) {
	i := p.killNext % len(p.replicas)
	p.killNext++
	p.replicas[i].kill()
	start := time.Now()
	if err := p.startReplica(ctx, i); err != nil {
		return 0, fmt.Errorf("restart eportal after a kill: %w", err)
	}
	return time.Since(start), nil
}
