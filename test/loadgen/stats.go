package main

import (
	"math"
	"slices"
	"time"
)

// Summary is the distribution of one set of latencies, in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample that at least p percent of
// the samples are no larger than. It returns 0 for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(n) / 100))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// summarize sorts samples in place and summarizes them.
func summarize(samples []time.Duration) Summary {
	slices.Sort(samples)
	s := Summary{Count: len(samples)}
	if len(samples) == 0 {
		return s
	}
	s.P50 = ms(percentile(samples, 50))
	s.P90 = ms(percentile(samples, 90))
	s.P99 = ms(percentile(samples, 99))
	s.Max = ms(samples[len(samples)-1])
	return s
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// perSecond is n events over d, to two decimals; 0 for no time.
func perSecond(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round2(n / d.Seconds())
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// The steps of one agent cycle, in order.
const (
	stepIndex   = iota // POST /api/v1/run (with -api v1: GET /api/v1/index/{build_id})
	stepVerify         // verify the index's signature and fields
	stepBundle         // GET /blobs/sha256/{digest} and its sha256
	stepCheckin        // POST /api/v1/checkin
	numSteps
)

var stepNames = [numSteps]string{"index", "verify", "bundle", "checkin"}

// recorder keeps one worker's latencies: each step's and each whole
// cycle's. It is not safe for concurrent use; each worker has its own.
type recorder struct {
	steps  [numSteps][]time.Duration
	cycles []time.Duration
}

// add records one cycle from the times its steps ended; t[0] is when it
// started. A step the cycle did not take (done[i] false: no download when
// the agent has the level already, no check-in of its own when the run
// carried it) is not recorded; it ended when the step before it did.
func (r *recorder) add(t [numSteps + 1]time.Time, done [numSteps]bool) {
	for i := range numSteps {
		if !done[i] {
			continue
		}
		r.steps[i] = append(r.steps[i], t[i+1].Sub(t[i]))
	}
	r.cycles = append(r.cycles, t[numSteps].Sub(t[0]))
}

// merge joins the workers' recorders.
func merge(rs []*recorder) *recorder {
	var all recorder
	for _, r := range rs {
		for i := range numSteps {
			all.steps[i] = append(all.steps[i], r.steps[i]...)
		}
		all.cycles = append(all.cycles, r.cycles...)
	}
	return &all
}

// stepSummaries summarizes each step and then the whole cycle.
func (r *recorder) stepSummaries() []Step {
	out := make([]Step, 0, numSteps+1)
	for i := range numSteps {
		out = append(out, Step{Name: stepNames[i], Summary: summarize(r.steps[i])})
	}
	return append(out, Step{Name: "cycle", Summary: summarize(r.cycles)})
}
