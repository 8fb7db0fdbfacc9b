package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portalclient"
	"github.com/kcare/kcare/internal/trust"
)

// userAgent is what loadgen's requests say they are.
const userAgent = "kcare-loadgen"

// retryBackoff is the simulated agents' first pause before a retry:
// short, as a retry already counts as a failure.
const retryBackoff = 50 * time.Millisecond

var kernelID = kernel.KernelID(fakekernel.Version)

// agent is one simulated kcarectl on the fake kernel: its portal client,
// holding its server id and secret, and its index verifier.
type agent struct {
	hostname string
	c        *portalclient.Client
	v        *index.Verifier
	level    int // the level it has: 0 until its first download
}

// registerAgents registers n agents under key from conc workers at once,
// and returns them, each registration's latency, and how long it all
// took.
func registerAgents(ctx context.Context, url, key string, hc *http.Client, keys *trust.Keyring, n, conc int) ([]*agent, []time.Duration, time.Duration, error) {
	agents := make([]*agent, n)
	lat := make([]time.Duration, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	for range min(conc, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				a := &agent{
					hostname: fmt.Sprintf("loadgen-%07d.example.net", i),
					c:        &portalclient.Client{PatchServer: url, HTTP: hc, UserAgent: userAgent, Backoff: retryBackoff},
					v:        &index.Verifier{Keys: keys, BuildID: fakekernel.BuildID},
				}
				t := time.Now()
				id, secret, err := a.c.Register(ctx, key, a.hostname)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("register %s: %w", a.hostname, err)
					}
					mu.Unlock()
					return
				}
				lat[i] = time.Since(t)
				a.c.ServerID, a.c.Secret = id, secret
				a.v.ServerID = id // a rollback order must name it
				agents[i] = a
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return agents, lat, time.Since(start), firstErr
}

// errNoLevel is an index that offers no level where one was published.
var errNoLevel = errors.New("the index offers no level")

// cycle is one agent run: fetch the signed index and verify it, download
// the bundle it names and check its digest when the level is not the one
// the agent has (or always, with everyCycle: the worst case), check in.
// It records the steps' times in rec when all of them succeeded.
func (a *agent) cycle(ctx context.Context, rec *recorder, everyCycle bool) error {
	var t [numSteps + 1]time.Time
	t[0] = time.Now()
	body, sig, err := a.c.Index(ctx, fakekernel.BuildID, "", "")
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	t[stepIndex+1] = time.Now()
	idx, err := a.v.Verify(body, sig)
	if err != nil {
		return fmt.Errorf("verify index: %w", err)
	}
	if idx.Level == nil {
		return errNoLevel
	}
	t[stepVerify+1] = time.Now()
	l := idx.Level
	download := everyCycle || l.Level != a.level
	if download {
		data, err := a.c.Download(ctx, l.URL, l.Size, nil)
		if err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		if int64(len(data)) != l.Size || bundle.Digest(data) != l.Digest {
			return fmt.Errorf("bundle %s: got %d bytes with sha256 %s, the index says %d bytes", l.URL, len(data), bundle.Digest(data), l.Size)
		}
		a.level = l.Level
	}
	t[stepBundle+1] = time.Now()
	err = a.c.CheckIn(ctx, apitype.CheckIn{
		Hostname: a.hostname, Release: fakekernel.Release, BuildID: fakekernel.BuildID, KernelID: kernelID,
		Level: l.Level, EffectiveRelease: l.EffectiveRelease, Result: "ok", AgentVersion: userAgent,
	})
	if err != nil {
		return fmt.Errorf("checkin: %w", err)
	}
	t[stepCheckin+1] = time.Now()
	rec.add(t, download)
	return nil
}

// runCycles runs agent cycles from conc workers until d has passed (a
// cycle under way then finishes), ctx ends, or maxFailures is reached.
// Worker w takes agents w, w+conc, w+2*conc, ... in turn, so no agent
// (and its verifier) is used by two workers. It returns the latencies of
// the cycles that succeeded and how long the workers ran.
func runCycles(ctx context.Context, agents []*agent, conc int, d time.Duration, everyCycle bool, fails *failureLog) (*recorder, time.Duration) {
	recs := make([]*recorder, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		recs[w] = &recorder{}
		var own []*agent
		for i := w; i < len(agents); i += conc {
			own = append(own, agents[i])
		}
		wg.Go(func() {
			for j := 0; time.Since(start) < d && ctx.Err() == nil && fails.total() < maxFailures; j++ {
				if err := own[j%len(own)].cycle(ctx, recs[w], everyCycle); err != nil && ctx.Err() == nil {
					fails.fail(err)
				}
			}
		})
	}
	wg.Wait()
	return merge(recs), time.Since(start)
}

// runFleet registers the agents and runs their cycles against p.
func runFleet(ctx context.Context, cfg *config, p *portal, logf func(string, ...any)) (*Report, error) {
	fails := &failureLog{}
	hc := newHTTPClient(cfg.concurrency, fails)
	defer hc.CloseIdleConnections()

	key := agentKey
	if cfg.sharedKey {
		key = seedKey
	}
	logf("registering %d agents under key %s, %d at a time", cfg.agents, key, cfg.concurrency)
	agents, regLat, regTime, err := registerAgents(ctx, p.url, key, hc, p.keys, cfg.agents, cfg.concurrency)
	if err != nil {
		return nil, err
	}
	logf("running agent cycles from %d workers for %s", cfg.concurrency, cfg.duration)
	cpu := startCPU(p.serve)
	rec, elapsed := runCycles(ctx, agents, cfg.concurrency, cfg.duration, cfg.downloadEveryCycle, fails)
	usage := cpu()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cycles := len(rec.cycles)
	kind := "real"
	if cfg.downloadEveryCycle {
		kind = "worst"
	}
	return &Report{
		Backend:             cfg.db,
		SeededServers:       cfg.seed,
		SeedSeconds:         round2(p.seedTime.Seconds()),
		Agents:              cfg.agents,
		AgentKey:            key,
		RegisterSeconds:     round2(regTime.Seconds()),
		RegistrationsPerSec: perSecond(float64(cfg.agents), regTime),
		Registration:        summarize(regLat),
		Concurrency:         cfg.concurrency,
		Pinned:              cfg.pinned(),
		Cycle:               kind,
		DurationSeconds:     cfg.duration.Seconds(),
		ElapsedSeconds:      round2(elapsed.Seconds()),
		BundleBytes:         p.size,
		Cycles:              cycles,
		CyclesPerSecond:     perSecond(float64(cycles), elapsed),
		Steps:               rec.stepSummaries(),
		CPU:                 usage,
		CPUPerCycle:         usage.perEvent(cycles),
		Failures:            fails.report(),
	}, nil
}
