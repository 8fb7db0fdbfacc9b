package main

import (
	"cmp"
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
	hostname  string
	c         *portalclient.Client
	v         *index.Verifier
	level     int    // the level it has: 0 until its first download
	effective string // and that level's effective release
	etag      string // the entity tag of the index its last poll accepted
	// result is what its next check-in reports; "" is "ok". seq numbers
	// its check-ins in a run with -kill-every.
	result string
	seq    int
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

// cycleOptions say how agents run.
type cycleOptions struct {
	everyCycle bool // download the bundle in every cycle: the worst case
	v1         bool // the index and the check-in as two requests, as agents before the run endpoint
}

// report is the check-in of an agent at its level.
func (a *agent) report() apitype.CheckIn {
	ci := apitype.CheckIn{Hostname: a.hostname, Release: fakekernel.Release, BuildID: fakekernel.BuildID,
		KernelID: kernelID, Level: a.level, Result: cmp.Or(a.result, "ok"), AgentVersion: userAgent}
	if a.level > 0 {
		ci.EffectiveRelease = a.effective
	}
	return ci
}

// cycle is one agent run as kcarectl makes it: check in and fetch the
// signed index in one request (with o.v1, or from a portal without the
// run endpoint, fetch the index and check in after), verify it, download
// the bundle it names and check its digest when the level is not the one
// the agent has (or always, with o.everyCycle), and then check in again
// if the level changed. It records the steps' times in rec when all of
// them succeeded.
func (a *agent) cycle(ctx context.Context, rec *recorder, o cycleOptions) error {
	var t [numSteps + 1]time.Time
	var done [numSteps]bool
	t[0] = time.Now()
	a.c.Report = nil
	if !o.v1 {
		ci := a.report()
		a.c.Report = &ci
	}
	body, sig, err := a.c.Index(ctx, fakekernel.BuildID, "", "")
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	checkedIn := !o.v1 && a.c.Report == nil
	t[stepIndex+1], done[stepIndex] = time.Now(), true
	idx, err := a.v.Verify(body, sig)
	if err != nil {
		return fmt.Errorf("verify index: %w", err)
	}
	if idx.Level == nil {
		return errNoLevel
	}
	t[stepVerify+1], done[stepVerify] = time.Now(), true
	l := idx.Level
	changed := l.Level != a.level
	if o.everyCycle || changed {
		data, err := a.c.Download(ctx, l.URL, l.Size, nil)
		if err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		if int64(len(data)) != l.Size || bundle.Digest(data) != l.Digest {
			return fmt.Errorf("bundle %s: got %d bytes with sha256 %s, the index says %d bytes", l.URL, len(data), bundle.Digest(data), l.Size)
		}
		a.level, a.effective = l.Level, l.EffectiveRelease
		done[stepBundle] = true
	}
	t[stepBundle+1] = time.Now()
	if !checkedIn || changed {
		if err := a.c.CheckIn(ctx, a.report()); err != nil {
			return fmt.Errorf("checkin: %w", err)
		}
		done[stepCheckin] = true
	}
	t[stepCheckin+1] = time.Now()
	rec.add(t, done)
	return nil
}

// runCycles runs agent cycles from conc workers until d has passed (a
// cycle under way then finishes), ctx ends, or maxFailures is reached.
// Worker w takes agents w, w+conc, w+2*conc, ... in turn, so no agent
// (and its verifier) is used by two workers. It returns the latencies of
// the cycles that succeeded and how long the workers ran.
func runCycles(ctx context.Context, agents []*agent, conc int, d time.Duration, o cycleOptions, fails *failureLog) (*recorder, time.Duration) {
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
				if err := own[j%len(own)].cycle(ctx, recs[w], o); err != nil && ctx.Err() == nil {
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
	cpu := startCPU(cfg.db == "postgres", p.serves()...)
	rec, elapsed := runCycles(ctx, agents, cfg.concurrency, cfg.duration,
		cycleOptions{everyCycle: cfg.downloadEveryCycle, v1: cfg.api == "v1"}, fails)
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
		Replicas:            len(p.replicas),
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
		API:                 cfg.api,
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
