package faults_test

import (
	"math"
	"slices"
	"time"
)

// latencies summarizes durations: count, 50th and 99th percentile
// (nearest rank), maximum, rounded to the 0.1 ms.
type latencies struct {
	n             int
	p50, p99, max time.Duration
}

func summary(d []time.Duration) latencies {
	s := slices.Clone(d)
	slices.Sort(s)
	l := latencies{n: len(s)}
	if len(s) == 0 {
		return l
	}
	rank := func(p float64) time.Duration {
		r := int(math.Ceil(p * float64(len(s)) / 100))
		return s[min(max(r, 1), len(s))-1].Round(100 * time.Microsecond)
	}
	l.p50, l.p99, l.max = rank(50), rank(99), s[len(s)-1].Round(100*time.Microsecond)
	return l
}
