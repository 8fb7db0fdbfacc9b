package main

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/index"
)

// The agents' timers as deploy/systemd has them.
const (
	defaultRunEvery   = 4 * time.Hour    // kcare-auto-update.timer: OnUnitActiveSec
	defaultRunJitter  = 30 * time.Minute // and RandomizedDelaySec
	defaultPollEvery  = 2 * time.Minute  // kcare-poll.timer: OnUnitActiveSec
	defaultPollJitter = 30 * time.Second // and RandomizedDelaySec
)

// rolloutConfig is a -rollout run: the agents' timers, divided by Scale
// for the run (and the time measured multiplied back).
type rolloutConfig struct {
	urgent     bool
	waves      string // the main feed's waves; "" none
	scale      float64
	runEvery   time.Duration
	runJitter  time.Duration
	pollEvery  time.Duration // 0: the agents do not poll
	pollJitter time.Duration
	timeout    time.Duration // of the agents' time; 0: three full run periods
	target     float64       // the share of agents that ends the run
}

// RolloutReport is the result of a -rollout run: how long a level took
// from its publish to reach the agents. Times are in the agents' time
// (the run's, multiplied by the scale).
type RolloutReport struct {
	Backend      string    `json:"backend"`
	Agents       int       `json:"agents"`
	Urgent       bool      `json:"urgent"`
	Waves        string    `json:"waves"`
	Scale        float64   `json:"time_scale"`
	RunEvery     string    `json:"run_every"`
	RunJitter    string    `json:"run_jitter"`
	PollEvery    string    `json:"poll_every"` // "" no polls
	PollJitter   string    `json:"poll_jitter"`
	RolloutEvery string    `json:"rollout_interval"`
	Reached      []Reach   `json:"reached"` // the shares of agents with the level, and when
	Runs         int       `json:"runs"`    // full runs: check-in and index in one request
	Polls        int       `json:"polls"`
	NotModified  int       `json:"not_modified"` // polls answered 304
	Downloads    int       `json:"downloads"`
	WallSeconds  float64   `json:"wall_seconds"` // the run's own length after the publish
	Failures     Failures  `json:"failures"`
	Unreached    int       `json:"unreached"` // agents without the level when the run ended
	TimedOut     bool      `json:"timed_out,omitempty"`
	PortalCPU    *CPU      `json:"cpu,omitempty"`
	PerRequest   *PerEvent `json:"cpu_per_request,omitempty"` // CPU milliseconds per request (full run or poll)
}

// Reach is when a share of the agents had the level.
type Reach struct {
	Percent float64 `json:"percent"`
	Seconds float64 `json:"seconds"` // after the publish, in the agents' time
}

// scaled is an agent's duration d as the run waits it.
func (rc *rolloutConfig) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) / rc.scale)
}

// jitter is a random duration up to d.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// event is an agent's next action.
type event struct {
	at    time.Time
	agent int
	poll  bool
}

type events []event

func (e events) Len() int           { return len(e) }
func (e events) Less(i, j int) bool { return e[i].at.Before(e[j].at) }
func (e events) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)        { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

// schedule holds every agent's next run and next poll.
type schedule struct {
	mu sync.Mutex
	q  events
}

func (s *schedule) push(e event) {
	s.mu.Lock()
	heap.Push(&s.q, e)
	s.mu.Unlock()
}

// next waits for the earliest event to be due and takes it; false when
// ctx ends.
func (s *schedule) next(ctx context.Context) (event, bool) {
	for {
		s.mu.Lock()
		var wait time.Duration = 50 * time.Millisecond
		if len(s.q) > 0 {
			if d := time.Until(s.q[0].at); d <= 0 {
				e := heap.Pop(&s.q).(event)
				s.mu.Unlock()
				return e, true
			} else if d < wait {
				wait = d
			}
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return event{}, false
		case <-time.After(wait):
		}
	}
}

// runRollout registers the agents, brings them all to level 1, then
// publishes level 2 (urgent with rc.urgent) and lets the agents run by
// their timers until rc.target of them have it or the timeout: the time
// from the publish to each share of the agents is what it reports.
func runRollout(ctx context.Context, cfg *config, rc *rolloutConfig, p *portal, logf func(string, ...any)) (*RolloutReport, error) {
	fails := &failureLog{}
	hc := newHTTPClient(cfg.concurrency, fails)
	defer hc.CloseIdleConnections()
	if rc.waves != "" {
		if err := p.rest(ctx, http.MethodPut, "/admin/api/feeds/main/rollout", fmt.Sprintf(`{"waves":[%s]}`, rc.waves)); err != nil {
			return nil, err
		}
	}
	logf("registering %d agents, %d at a time", cfg.agents, cfg.concurrency)
	agents, _, _, err := registerAgents(ctx, p.url, agentKey, hc, p.keys, cfg.agents, cfg.concurrency)
	if err != nil {
		return nil, err
	}
	logf("bringing every agent to level 1")
	var next atomic.Int64
	var wg sync.WaitGroup
	for range cfg.concurrency {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(agents) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if err := agents[i].cycle(ctx, &recorder{}, cycleOptions{}); err != nil {
					fails.fail(fmt.Errorf("first run: %w", err))
				}
			}
		})
	}
	wg.Wait()
	if !fails.report().None() {
		return nil, fmt.Errorf("bringing the agents to level 1 failed: %v", fails.report().Samples)
	}

	// Every agent's timers at a random phase, as machines booted at
	// random times have them.
	start := time.Now()
	sched := &schedule{}
	for i := range agents {
		sched.push(event{at: start.Add(jitter(rc.scaled(rc.runEvery))), agent: i})
		if rc.pollEvery > 0 {
			sched.push(event{at: start.Add(jitter(rc.scaled(rc.pollEvery))), agent: i, poll: true})
		}
	}
	data, sig, err := makeLevelBundle(p.publisher, cfg.bundleSize, 2)
	if err != nil {
		return nil, err
	}
	timeout := rc.timeout
	if timeout == 0 {
		timeout = 3 * (rc.runEvery + rc.runJitter)
	}
	runCtx, stop := context.WithTimeout(ctx, rc.scaled(timeout))
	defer stop()
	cpu := startCPU(cfg.db == "postgres", p.serve)
	t0 := time.Now()
	if err := p.publish(ctx, data, sig); err != nil {
		return nil, err
	}
	if rc.urgent {
		ps, err := p.newestPatchset(ctx)
		if err != nil {
			return nil, err
		}
		if err := p.rest(ctx, http.MethodPut, "/admin/api/patchsets/"+ps+"/urgent", `{"urgent":true}`); err != nil {
			return nil, err
		}
	}
	logf("published level 2 (urgent: %v); the agents run by their timers, scaled by 1/%g", rc.urgent, rc.scale)

	var (
		mu        sync.Mutex
		reached   []time.Duration
		runs      atomic.Int64
		polls     atomic.Int64
		notMod    atomic.Int64
		downloads atomic.Int64
	)
	want := int(float64(len(agents))*rc.target + 0.999999)
	done := make(chan struct{})
	var doneOnce sync.Once
	full := func(a *agent) {
		before := a.level
		runs.Add(1)
		if err := a.cycle(runCtx, &recorder{}, cycleOptions{}); err != nil && runCtx.Err() == nil {
			fails.fail(err)
			return
		}
		if a.level != before {
			downloads.Add(1)
		}
		if before < 2 && a.level == 2 {
			mu.Lock()
			reached = append(reached, time.Since(t0))
			n := len(reached)
			mu.Unlock()
			if n >= want {
				doneOnce.Do(func() { close(done) })
			}
		}
	}
	var workers sync.WaitGroup
	for range cfg.concurrency {
		workers.Go(func() {
			for {
				e, ok := sched.next(runCtx)
				if !ok {
					return
				}
				a := agents[e.agent]
				if !e.poll {
					full(a)
					sched.push(event{at: time.Now().Add(rc.scaled(rc.runEvery + jitter(rc.runJitter))), agent: e.agent})
					continue
				}
				polls.Add(1)
				urgent, changed, err := a.poll(runCtx)
				switch {
				case err != nil && runCtx.Err() == nil:
					fails.fail(fmt.Errorf("poll: %w", err))
				case !changed:
					notMod.Add(1)
				case urgent:
					full(a)
				}
				sched.push(event{at: time.Now().Add(rc.scaled(rc.pollEvery + jitter(rc.pollJitter))), agent: e.agent, poll: true})
			}
		})
	}
	timedOut := false
	select {
	case <-done:
	case <-runCtx.Done():
		timedOut = ctx.Err() == nil
	}
	wall := time.Since(t0)
	stop()
	workers.Wait()
	usage := cpu()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &RolloutReport{
		Backend: cfg.db, Agents: len(agents), Urgent: rc.urgent, Waves: rc.waves, Scale: rc.scale,
		RunEvery: rc.runEvery.String(), RunJitter: rc.runJitter.String(),
		RolloutEvery: rc.scaled(time.Minute).String(),
		Runs:         int(runs.Load()), Polls: int(polls.Load()), NotModified: int(notMod.Load()), Downloads: int(downloads.Load()),
		WallSeconds: round2(wall.Seconds()), Failures: fails.report(), TimedOut: timedOut, PortalCPU: usage,
	}
	if rc.pollEvery > 0 {
		r.PollEvery, r.PollJitter = rc.pollEvery.String(), rc.pollJitter.String()
	}
	r.PerRequest = usage.perEvent(r.Runs + r.Polls)
	mu.Lock()
	slices.Sort(reached)
	r.Unreached = len(agents) - len(reached)
	for _, pct := range []float64{50, 90, 99, 100} {
		n := int(float64(len(agents))*pct/100 + 0.999999)
		if n >= 1 && n <= len(reached) {
			r.Reached = append(r.Reached, Reach{Percent: pct, Seconds: round2(reached[n-1].Seconds() * rc.scale)})
		}
	}
	mu.Unlock()
	return r, nil
}

// poll is kcarectl --poll: a conditional request for the index; a new
// answer is verified, and reports whether it names an urgent level above
// the agent's.
func (a *agent) poll(ctx context.Context) (urgent, changed bool, err error) {
	body, sig, tag, err := a.c.IndexIfChanged(ctx, index.Request{BuildID: fakekernel.BuildID}, a.etag)
	if err != nil || body == nil {
		return false, false, err
	}
	idx, err := a.v.Verify(body, sig)
	if err != nil {
		return false, true, fmt.Errorf("verify index: %w", err)
	}
	a.etag = tag
	return idx.Level != nil && idx.Level.Urgent && idx.Level.Level > a.level, true, nil
}

// rest calls the portal's REST API as its admin.
func (p *portal) rest(ctx context.Context, method, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Api-Key", p.token)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: requestBound, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(out)))
	}
	return nil
}

// newestPatchset is the name of the patchset published last.
func (p *portal) newestPatchset(ctx context.Context) (string, error) {
	out, err := p.eportal(ctx, "", "patchset", "list")
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(lines) < 2 || len(f) == 0 {
		return "", fmt.Errorf("eportal patchset list: no patchset in %q", out)
	}
	return f[0], nil
}

func (r *RolloutReport) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	kind := "normal"
	if r.Urgent {
		kind = "urgent"
	}
	waves := r.Waves
	if waves == "" {
		waves = "none"
	}
	fmt.Fprintf(tw, "rollout\t%d agents, level 2 %s, waves %s, %s\n", r.Agents, kind, waves, r.Backend)
	scale := "real time"
	if r.Scale != 1 {
		scale = fmt.Sprintf("every timer divided by %g for the run; times below multiplied back", r.Scale)
	}
	fmt.Fprintf(tw, "time\t%s\n", scale)
	fmt.Fprintf(tw, "full runs\tevery %s + up to %s\n", r.RunEvery, r.RunJitter)
	if r.PollEvery != "" {
		fmt.Fprintf(tw, "polls\tevery %s + up to %s\n", r.PollEvery, r.PollJitter)
	} else {
		fmt.Fprintf(tw, "polls\tnone\n")
	}
	for _, re := range r.Reached {
		fmt.Fprintf(tw, "level 2 on %g%%\t%s\n", re.Percent, (time.Duration(re.Seconds * float64(time.Second))).Round(time.Second))
	}
	if r.Unreached > 0 {
		fmt.Fprintf(tw, "without it at the end\t%d agents (timed out: %v)\n", r.Unreached, r.TimedOut)
	}
	fmt.Fprintf(tw, "requests\t%d full runs, %d polls (%d answered 304), %d downloads, in %.1f s of the run\n",
		r.Runs, r.Polls, r.NotModified, r.Downloads, r.WallSeconds)
	if r.PerRequest != nil {
		fmt.Fprintf(tw, "CPU per request\teportal %.3f ms, loadgen %.3f ms\n", r.PerRequest.Server, r.PerRequest.Loadgen)
	}
	fmt.Fprintf(tw, "failures\t%d failed, %d retried\n", r.Failures.Failed, r.Failures.Retried)
	for _, s := range r.Failures.Samples {
		fmt.Fprintf(tw, "\t%s\n", s)
	}
	return tw.Flush()
}
