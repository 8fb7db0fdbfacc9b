package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/portal/rollout"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/window"
)

// The rollout's actor: the changes the portal makes by itself (a wave
// advanced, a rollout halted) are written to the audit log in its name.
var rolloutActor = Actor{Name: "rollout", IP: "portal"}

// Bounds of the rollout loop's work.
const (
	// sampleEvery is the longest a running rollout goes without a sample
	// for its chart; a sample that differs from the last is taken at once.
	sampleEvery = 10 * time.Minute
	// coverageEvery is how often the fleet's coverage of the day is
	// counted again.
	coverageEvery = 10 * time.Minute
)

// gates is what every index answer of one store version needs to know of
// the feeds' rollouts, policies and windows: read once per version.
type gates struct {
	version  int64
	policies map[string]rollout.Policy // by feed; DefaultPolicy when none is set
	windows  map[string]window.Spec    // by feed: its policy's window
	keys     map[string]window.Spec    // by key: its own window
	urgent   map[string]bool           // by patchset
	feeds    map[string][]*liveRollout // by feed: the active rollouts, oldest first
}

// liveRollout is an active rollout as the index answers see it.
type liveRollout struct {
	store.Rollout
	state   rollout.State
	waves   rollout.Waves
	targets map[string]int // by build-id: the patchset's level for that kernel
}

// population is a rollout's servers ranked for its waves.
type population struct {
	ranks map[string]int
	n     int
}

// rolloutCache holds the gates of the newest version read, each active
// rollout's population (refreshed by RolloutTick), and what the rollout
// loop last recorded.
type rolloutCache struct {
	mu   sync.Mutex // held while gates are read from the store
	cur  *gates
	pops sync.Map // rollout id -> *population

	marks        sync.Mutex
	lastSample   map[int64]sampleMark
	lastCoverage time.Time
}

// gates returns the gates as of at least version.
func (c *Core) gates(ctx context.Context, version int64) (*gates, error) {
	rc := &c.rollouts
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if g := rc.cur; g != nil && g.version >= version {
		return g, nil
	}
	g, err := c.readGates(ctx, version)
	if err != nil {
		return nil, err
	}
	rc.cur = g
	return g, nil
}

// readGates reads the gates of version from the store.
func (c *Core) readGates(ctx context.Context, version int64) (*gates, error) {
	g := &gates{version: version, policies: map[string]rollout.Policy{}, windows: map[string]window.Spec{},
		keys: map[string]window.Spec{}, urgent: map[string]bool{}, feeds: map[string][]*liveRollout{}}
	frs, err := c.st.FeedRollouts(ctx)
	if err != nil {
		return nil, err
	}
	for _, fr := range frs {
		p, err := policyOf(&fr)
		if err != nil {
			return nil, err
		}
		g.policies[fr.Feed] = p
		if g.windows[fr.Feed], err = window.Parse(p.Window); err != nil {
			return nil, fmt.Errorf("feed %s: %w", fr.Feed, err)
		}
	}
	kw, err := c.st.KeyWindows(ctx)
	if err != nil {
		return nil, err
	}
	for k, spec := range kw {
		if g.keys[k], err = window.Parse(spec); err != nil {
			return nil, fmt.Errorf("key %s: %w", store.MaskKey(k), err)
		}
	}
	ps, err := c.st.Patchsets(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.Urgent {
			g.urgent[p.Name] = true
		}
	}
	rs, err := c.st.Rollouts(ctx, "", true)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		lr, err := c.live(ctx, r)
		if err != nil {
			return nil, err
		}
		g.feeds[r.Feed] = append(g.feeds[r.Feed], lr)
	}
	return g, nil
}

// live reads what the answers need of an active rollout.
func (c *Core) live(ctx context.Context, r store.Rollout) (*liveRollout, error) {
	waves, err := rollout.ParseWaves(r.Waves)
	if err != nil || len(waves) == 0 {
		return nil, fmt.Errorf("rollout %d: waves %q: %v", r.ID, r.Waves, err)
	}
	targets, err := c.st.PatchsetTargets(ctx, r.Patchset)
	if err != nil {
		return nil, err
	}
	return &liveRollout{Rollout: r, state: rollout.State(r.State), waves: waves, targets: targets}, nil
}

// policyOf reads a feed's stored policy over the defaults.
func policyOf(fr *store.FeedRollout) (rollout.Policy, error) {
	p := rollout.DefaultPolicy()
	if fr == nil {
		return p, nil
	}
	if err := json.Unmarshal([]byte(fr.Policy), &p); err != nil {
		return p, fmt.Errorf("rollout policy of feed %s: %w", fr.Feed, err)
	}
	w, err := rollout.ParseWaves(fr.Waves)
	if err != nil {
		return p, fmt.Errorf("rollout policy of feed %s: %w", fr.Feed, err)
	}
	p.Waves = w
	return p, nil
}

// population returns r's ranked servers: as the rollout loop last read
// them, or read now for a rollout it has not seen yet.
func (c *Core) population(ctx context.Context, r *liveRollout) (*population, error) {
	if p, ok := c.rollouts.pops.Load(r.ID); ok {
		return p.(*population), nil
	}
	members, err := c.st.RolloutMembers(ctx, r.Feed, slices.Sorted(maps.Keys(r.targets)))
	if err != nil {
		return nil, err
	}
	return c.setPopulation(r.ID, members), nil
}

// setPopulation ranks members as rollout id's population and keeps it.
func (c *Core) setPopulation(id int64, members []store.RolloutMember) *population {
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	p := &population{ranks: rollout.Rank(ids), n: len(ids)}
	c.rollouts.pops.Store(id, p)
	return p
}

// waveOf is the wave of server id in r: by its rank, or the last one
// for a server the population does not hold yet.
func (p *population) waveOf(r *liveRollout, id string) int {
	rank, ok := p.ranks[id]
	if !ok {
		rank = p.n
	}
	return r.waves.WaveOf(rank, p.n)
}

// gate is what an index answer for one server depends on beyond its
// question: for each active rollout in its feed with a level for the
// kernel asked about, in order, whether the server may have it ('1') or
// not ('0'). Servers with the same gate share answers.
func (c *Core) gate(ctx context.Context, g *gates, feed, buildID, serverID string, reported *store.Server) (string, error) {
	var b strings.Builder
	for _, r := range g.feeds[feed] {
		target, ok := r.targets[buildID]
		if !ok {
			continue
		}
		hasIt := reported != nil && reported.BuildID == buildID && reported.Level >= target
		// A rollout not yet begun (stamped) gives its level to nobody:
		// its health gate counts what happens from its start.
		admits := hasIt
		if !r.Started.IsZero() {
			wave := len(r.waves) - 1
			if r.state == rollout.Running || r.state == rollout.Paused {
				p, err := c.population(ctx, r)
				if err != nil {
					return "", err
				}
				wave = p.waveOf(r, serverID)
			}
			admits = r.state.Admits(r.Wave, wave, hasIt)
		}
		if admits {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String(), nil
}

// held returns the patchsets a gate keeps from a server: those of the
// rollouts its '0's stand for.
func (g *gates) held(feed, buildID, gate string) map[string]bool {
	out := map[string]bool{}
	i := 0
	for _, r := range g.feeds[feed] {
		if _, ok := r.targets[buildID]; !ok {
			continue
		}
		if i < len(gate) && gate[i] == '0' {
			out[r.Patchset] = true
		}
		i++
	}
	return out
}

// rollbackReason says why a server at level from is ordered back, when a
// rolled-back rollout of its feed is the cause; "" when none is.
func (g *gates) rollbackReason(feed, buildID string, from int) string {
	for _, r := range g.feeds[feed] {
		if t, ok := r.targets[buildID]; ok && r.state == rollout.RolledBack && t <= from {
			why := fmt.Sprintf("the rollout of %s in feed %s was rolled back", r.Patchset, r.Feed)
			if r.Reason != "" {
				why += ": " + r.Reason
			}
			return why
		}
	}
	return ""
}

// windowFor is the maintenance window of a server: its key's own, else
// its feed's.
func (g *gates) windowFor(feed string, key *store.Key) window.Spec {
	if key != nil {
		if w, ok := g.keys[key.Key]; ok {
			return w
		}
	}
	return g.windows[feed]
}

// RolloutPolicy returns a feed's rollout policy: the defaults for a feed
// that has none set.
func (c *Core) RolloutPolicy(ctx context.Context, feed string) (rollout.Policy, error) {
	if _, err := c.st.Feed(ctx, feed); err != nil {
		return rollout.Policy{}, err
	}
	fr, err := c.st.FeedRollout(ctx, feed)
	if isNotFound(err) {
		return rollout.DefaultPolicy(), nil
	}
	if err != nil {
		return rollout.Policy{}, err
	}
	return policyOf(fr)
}

// SetRolloutPolicy sets a feed's rollout policy. New patchsets roll out
// by it; rollouts under way keep their waves and take the rest.
func (c *Core) SetRolloutPolicy(ctx context.Context, a Actor, feed string, p rollout.Policy) error {
	if err := p.Check(); err != nil {
		return fmt.Errorf("%w: %w", store.ErrInvalidInput, err)
	}
	before, err := c.RolloutPolicy(ctx, feed)
	if err != nil {
		return err
	}
	spec, _ := window.Parse(p.Window)
	p.Window = spec.String()
	waves := p.Waves
	p.Waves = nil
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := c.st.SetFeedRollout(ctx, &store.FeedRollout{Feed: feed, Waves: waves.String(), Policy: string(b)}); err != nil {
		return err
	}
	p.Waves = waves
	c.audit(ctx, a, "feed.rollout", feed, policyDetail(p), before, p)
	return nil
}

// policyDetail is a policy as an audit entry's detail says it.
func policyDetail(p rollout.Policy) string {
	waves := p.Waves.String()
	if waves == "" {
		waves = "none"
	}
	return fmt.Sprintf("waves=%s soak=%s auto_rollback=%v window=%q", waves, p.Soak, p.AutoRollback, p.Window)
}

// SetKeyWindow sets an activation key's own maintenance window, which
// takes the place of its feed's; "" removes it.
func (c *Core) SetKeyWindow(ctx context.Context, a Actor, key, spec string) error {
	w, err := window.Parse(spec)
	if err != nil {
		return fmt.Errorf("%w: %w", store.ErrInvalidInput, err)
	}
	if err := c.st.SetKeyWindow(ctx, key, w.String()); err != nil {
		return err
	}
	c.audit(ctx, a, "key.window", key, fmt.Sprintf("window=%q", w.String()), nil, nil)
	return nil
}

// KeyWindows returns the keys' own maintenance windows, by key.
func (c *Core) KeyWindows(ctx context.Context) (map[string]string, error) {
	return c.st.KeyWindows(ctx)
}

// SetPatchsetUrgent marks a patchset urgent (its rollouts skip their
// soak times, and by a feed's policy its window), or not.
func (c *Core) SetPatchsetUrgent(ctx context.Context, a Actor, patchset string, urgent bool) error {
	if err := c.st.SetPatchsetUrgent(ctx, patchset, urgent); err != nil {
		return err
	}
	c.audit(ctx, a, "patchset.urgent", patchset, fmt.Sprintf("urgent=%v", urgent), nil, nil)
	return nil
}

// Rollouts lists the rollouts of feed ("" every feed), newest first.
func (c *Core) Rollouts(ctx context.Context, feed string) ([]store.Rollout, error) {
	rs, err := c.st.Rollouts(ctx, feed, false)
	slices.Reverse(rs)
	return rs, err
}

// RolloutStatus is a rollout with its policy and the health of each wave
// now.
type RolloutStatus struct {
	store.Rollout
	Policy   rollout.Policy
	Decision rollout.Decision
	// WaveSizes is how many servers each wave holds, the waves before it
	// included.
	WaveSizes []int
	// Servers is the population: each server with its wave.
	Servers []RolloutServer
}

// RolloutServer is one server of a rollout: its wave, the patchset's
// level for its kernel, the level it has, and its health signals.
type RolloutServer struct {
	ID      string
	Wave    int
	Target  int
	Level   int
	Signals rollout.Signals
}

// Rollout returns a rollout with the health of its waves now.
func (c *Core) Rollout(ctx context.Context, id int64) (*RolloutStatus, error) {
	r, err := c.st.Rollout(ctx, id)
	if err != nil {
		return nil, err
	}
	st, _, err := c.evaluate(ctx, r, c.Now())
	return st, err
}

// evaluate reads a rollout's population and decides on it at now; it
// also keeps the population for the index answers.
func (c *Core) evaluate(ctx context.Context, r *store.Rollout, now time.Time) (*RolloutStatus, []rollout.Member, error) {
	p, err := c.RolloutPolicy(ctx, r.Feed)
	if err != nil {
		return nil, nil, err
	}
	lr, err := c.live(ctx, *r)
	if err != nil {
		return nil, nil, err
	}
	sm, err := c.st.RolloutMembers(ctx, r.Feed, slices.Sorted(maps.Keys(lr.targets)))
	if err != nil {
		return nil, nil, err
	}
	pop := population{n: len(sm)}
	if lr.state.Active() {
		pop = *c.setPopulation(r.ID, sm)
	} else {
		c.rollouts.pops.Delete(r.ID)
		ids := make([]string, len(sm))
		for i, m := range sm {
			ids[i] = m.ID
		}
		pop.ranks = rollout.Rank(ids)
	}
	members := make([]rollout.Member, len(sm))
	for i, m := range sm {
		members[i] = rollout.Member{ID: m.ID, Wave: pop.waveOf(lr, m.ID), Target: lr.targets[m.BuildID], Level: m.Level,
			LastCheckin: m.LastCheckin, Health: memberHealth(m.Health)}
	}
	rr := rollout.Rollout{State: lr.state, Waves: lr.waves, Wave: r.Wave, Started: r.Started, WaveStarted: r.WaveStarted, Urgent: r.Urgent}
	d := rollout.Evaluate(rr, p, members, now)
	st := &RolloutStatus{Rollout: *r, Policy: p, Decision: d}
	for _, bp := range lr.waves {
		st.WaveSizes = append(st.WaveSizes, rollout.Size(pop.n, bp))
	}
	for _, m := range members {
		rs := RolloutServer{ID: m.ID, Wave: m.Wave, Target: m.Target, Level: m.Level}
		rs.Signals = rollout.Measure(m, rr, p, now)
		st.Servers = append(st.Servers, rs)
	}
	slices.SortFunc(st.Servers, func(a, b RolloutServer) int {
		if a.Wave != b.Wave {
			return a.Wave - b.Wave
		}
		return strings.Compare(a.ID, b.ID)
	})
	return st, members, nil
}

// memberHealth is a server's stored health as the rollout rules read it.
func memberHealth(h *store.Health) *rollout.Health {
	if h == nil {
		return nil
	}
	out := &rollout.Health{BootID: h.BootID, Taint: h.Taint, Warnings: h.Warnings, Oopses: h.Oopses,
		Rebooted: h.Rebooted, RebootedLevel: h.RebootedLevel}
	if a := h.Apply; a != nil {
		c := *a
		out.Apply = &c
	}
	return out
}

// ErrRolloutChanged is an operator's action on a rollout that changed
// since they saw it.
var ErrRolloutChanged = store.ErrChanged

// RolloutAction takes an operator's action on a rollout: pause, resume,
// promote, halt or roll back. A resumed or promoted wave soaks from now.
func (c *Core) RolloutAction(ctx context.Context, a Actor, id int64, act rollout.Action) (*store.Rollout, error) {
	if !slices.Contains(rollout.Actions, act) {
		return nil, invalid("action %q: one of pause, resume, promote, halt, rollback", act)
	}
	r, err := c.st.Rollout(ctx, id)
	if err != nil {
		return nil, err
	}
	waves, err := rollout.ParseWaves(r.Waves)
	if err != nil {
		return nil, err
	}
	state, wave, err := act.Apply(rollout.State(r.State), r.Wave, len(waves))
	if err != nil {
		return nil, fmt.Errorf("rollout %d: %w: %w", id, store.ErrInvalidInput, err)
	}
	reason := fmt.Sprintf("%s by %s", act, a.Name)
	next, err := c.moveRollout(ctx, a, r, state, wave, reason, "rollout."+string(act))
	if err != nil {
		return nil, err
	}
	return next, nil
}

// moveRollout takes r to state and wave, for reason, as the audit action
// says, if no other change came first (store.ErrChanged).
func (c *Core) moveRollout(ctx context.Context, a Actor, r *store.Rollout, state rollout.State, wave int, reason, action string) (*store.Rollout, error) {
	now := c.Now()
	next := *r
	next.State, next.Wave, next.Reason, next.Updated = string(state), wave, reason, now
	if wave != r.Wave || state == rollout.Running && r.State != string(rollout.Running) {
		next.WaveStarted = now
	}
	if err := c.st.UpdateRollout(ctx, &next, r.State, r.Wave); err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("%s in feed %s: %s at wave %d; %s", r.Patchset, r.Feed, state, wave+1, reason)
	c.audit(ctx, a, action, fmt.Sprintf("rollout/%d", r.ID), detail, rolloutAudit(r), rolloutAudit(&next))
	return &next, nil
}

func rolloutAudit(r *store.Rollout) any {
	return map[string]any{"feed": r.Feed, "patchset": r.Patchset, "waves": r.Waves, "wave": r.Wave + 1, "state": r.State, "reason": r.Reason}
}

// RolloutSamples returns a rollout's samples over time, for its chart.
func (c *Core) RolloutSamples(ctx context.Context, id int64) ([]Sample, error) {
	raw, err := c.st.RolloutSamples(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]Sample, 0, len(raw))
	for _, s := range raw {
		var v Sample
		if err := json.Unmarshal([]byte(s.Sample), &v); err != nil {
			return nil, fmt.Errorf("sample of rollout %d at %s: %w", id, s.At.Format(time.RFC3339), err)
		}
		v.At = s.At
		out = append(out, v)
	}
	return out, nil
}

// Sample is a rollout at one moment: where it was, how many of its
// servers had the patchset's level, and the warnings per wave.
type Sample struct {
	At       time.Time `json:"-"`
	State    string    `json:"state"`
	Wave     int       `json:"wave"`
	Servers  int       `json:"servers"`
	Admitted int       `json:"admitted"` // servers in the waves so far
	Applied  int       `json:"applied"`  // servers with the level
	Warnings []int64   `json:"warnings"` // new kernel warnings, by wave
}

// sampleOf is a rollout's sample from its status.
func sampleOf(st *RolloutStatus) Sample {
	s := Sample{State: st.State, Wave: st.Wave, Warnings: make([]int64, len(st.Decision.Waves))}
	for i, w := range st.Decision.Waves {
		s.Servers += w.Servers
		if i <= st.Wave {
			s.Admitted += w.Servers
		}
		s.Warnings[i] = w.Warnings
	}
	for _, srv := range st.Servers {
		if srv.Level >= srv.Target {
			s.Applied++
		}
	}
	return s
}

// beginRollouts stamps the start of the rollouts a publish or an enable
// has just begun, so that their first wave gets the level at once rather
// than at the rollout loop's next round (which stamps what this misses).
func (c *Core) beginRollouts(ctx context.Context) {
	if _, err := c.st.StampRollouts(ctx, c.Now()); err != nil {
		c.log.Warn("new rollouts begin at the rollout loop's next round", "err", err)
	}
}

// RolloutTick is one round of the rollout loop at the portal's now: it
// stamps the start of new rollouts, decides on each running or paused
// one (rollout.Evaluate) and records what it decided: a halt (a roll back
// with the feed's auto-rollback), the next wave, the end; each in the
// audit log in the rollout's name. It samples each rollout for its chart
// and counts the fleet's coverage of the day. With several portals on one
// database each runs the loop; a change another made first is skipped.
func (c *Core) RolloutTick(ctx context.Context) error {
	now := c.Now()
	if _, err := c.st.StampRollouts(ctx, now); err != nil {
		return err
	}
	rs, err := c.st.Rollouts(ctx, "", true)
	if err != nil {
		return err
	}
	var errs []error
	for i := range rs {
		if err := c.tickRollout(ctx, &rs[i], now); err != nil && !errors.Is(err, store.ErrChanged) {
			errs = append(errs, fmt.Errorf("rollout %d (%s in feed %s): %w", rs[i].ID, rs[i].Patchset, rs[i].Feed, err))
		}
	}
	if err := c.countCoverage(ctx, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// tickRollout decides on one rollout at now.
func (c *Core) tickRollout(ctx context.Context, r *store.Rollout, now time.Time) error {
	st, _, err := c.evaluate(ctx, r, now)
	if err != nil {
		return err
	}
	if err := c.sample(ctx, st, now); err != nil {
		c.log.Warn("rollout sample", "rollout", r.ID, "error", err)
	}
	d := st.Decision
	switch d.Verdict {
	case rollout.Unwell:
		state := rollout.Halted
		if st.Policy.AutoRollback {
			state = rollout.RolledBack
		}
		_, err = c.moveRollout(ctx, rolloutActor, r, state, r.Wave, d.Reason, "rollout.halt")
		if err == nil {
			c.log.Warn("rollout halted", "rollout", r.ID, "feed", r.Feed, "patchset", r.Patchset, "wave", r.Wave+1,
				"state", string(state), "reason", d.Reason)
		}
	case rollout.Advance:
		_, err = c.moveRollout(ctx, rolloutActor, r, rollout.Running, r.Wave+1, d.Reason, "rollout.advance")
	case rollout.Finish:
		_, err = c.moveRollout(ctx, rolloutActor, r, rollout.Done, r.Wave, d.Reason, "rollout.done")
	}
	return err
}

// sample records a rollout's sample when it differs from the last one
// recorded, or that one is sampleEvery old.
func (c *Core) sample(ctx context.Context, st *RolloutStatus, now time.Time) error {
	s := sampleOf(st)
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	c.rollouts.marks.Lock()
	last := c.rollouts.lastSample[st.ID]
	c.rollouts.marks.Unlock()
	if last.body == string(b) && now.Sub(last.at) < sampleEvery {
		return nil
	}
	if err := c.st.AddRolloutSample(ctx, st.ID, store.RolloutSample{At: now, Sample: string(b)}); err != nil {
		return err
	}
	c.rollouts.marks.Lock()
	if c.rollouts.lastSample == nil {
		c.rollouts.lastSample = map[int64]sampleMark{}
	}
	c.rollouts.lastSample[st.ID] = sampleMark{body: string(b), at: now}
	c.rollouts.marks.Unlock()
	return nil
}

// sampleMark is the last sample recorded of a rollout.
type sampleMark struct {
	body string
	at   time.Time
}

// countCoverage records the fleet's state counts for today (UTC), at
// most every coverageEvery.
func (c *Core) countCoverage(ctx context.Context, now time.Time) error {
	c.rollouts.marks.Lock()
	due := now.Sub(c.rollouts.lastCoverage) >= coverageEvery || now.Before(c.rollouts.lastCoverage)
	c.rollouts.marks.Unlock()
	if !due {
		return nil
	}
	s, err := c.st.Stats(ctx, now, c.cfg.InactiveAge)
	if err != nil {
		return err
	}
	d := store.CoverageDay{Day: now.UTC().Format(time.DateOnly), Total: s.Total, UpToDate: s.UpToDate, OutOfDate: s.OutOfDate,
		Unsupported: s.Unsupported, Inactive: s.Inactive}
	if err := c.st.RecordCoverage(ctx, d); err != nil {
		return err
	}
	c.rollouts.marks.Lock()
	c.rollouts.lastCoverage = now
	c.rollouts.marks.Unlock()
	return nil
}

// Coverage returns the fleet's counts of the last days days, today
// included, oldest first; a day without a count is missing.
func (c *Core) Coverage(ctx context.Context, days int) ([]store.CoverageDay, error) {
	today := c.Now()
	from := today.AddDate(0, 0, -(days - 1)).Format(time.DateOnly)
	return c.st.Coverage(ctx, from, today.Format(time.DateOnly))
}
