package main

import (
	"testing"
	"time"
)

func durations(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

// oneToHundred is 1ms, 2ms, ... 100ms.
func oneToHundred() []time.Duration {
	var out []time.Duration
	for i := 1; i <= 100; i++ {
		out = append(out, time.Duration(i)*time.Millisecond)
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one_sample_p50", durations(7), 50, 7 * time.Millisecond},
		{"one_sample_p99", durations(7), 99, 7 * time.Millisecond},
		{"two_samples_p50", durations(1, 2), 50, 1 * time.Millisecond},
		{"two_samples_p51", durations(1, 2), 51, 2 * time.Millisecond},
		{"ten_p90", durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"ten_p99", durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"hundred_p50", oneToHundred(), 50, 50 * time.Millisecond},
		{"hundred_p90", oneToHundred(), 90, 90 * time.Millisecond},
		{"hundred_p99", oneToHundred(), 99, 99 * time.Millisecond},
		{"hundred_p100", oneToHundred(), 100, 100 * time.Millisecond},
		{"tiny_p", durations(3, 4, 5), 0.0001, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%d samples, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		want    Summary
	}{
		{"none", nil, Summary{}},
		{"unsorted", durations(30, 10, 20), Summary{Count: 3, P50: 20, P90: 30, P99: 30, Max: 30}},
		{"hundred_reversed", reversed(oneToHundred()), Summary{Count: 100, P50: 50, P90: 90, P99: 99, Max: 100}},
		{"microseconds", []time.Duration{1234567 * time.Nanosecond, 1500 * time.Nanosecond}, Summary{Count: 2, P50: 0.002, P90: 1.235, P99: 1.235, Max: 1.235}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.samples); got != tt.want {
				t.Errorf("summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func reversed(d []time.Duration) []time.Duration {
	for i, j := 0, len(d)-1; i < j; i, j = i+1, j-1 {
		d[i], d[j] = d[j], d[i]
	}
	return d
}

func TestPerSecond(t *testing.T) {
	tests := []struct {
		name string
		n    float64
		d    time.Duration
		want float64
	}{
		{"no_time", 10, 0, 0},
		{"whole", 300, 30 * time.Second, 10},
		{"rounded", 1000, 3 * time.Second, 333.33},
		{"fraction_of_a_second", 5, 250 * time.Millisecond, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := perSecond(tt.n, tt.d); got != tt.want {
				t.Errorf("perSecond(%v, %v) = %v, want %v", tt.n, tt.d, got, tt.want)
			}
		})
	}
}

func TestRecorder(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	at := func(ms ...int) (t [numSteps + 1]time.Time) {
		for i, m := range ms {
			t[i] = t0.Add(time.Duration(m) * time.Millisecond)
		}
		return t
	}
	a, b := &recorder{}, &recorder{}
	all := [numSteps]bool{true, true, true, true}
	a.add(at(0, 2, 3, 7, 10), all)
	b.add(at(0, 4, 5, 13, 20), all)
	b.add(at(0, 1, 2, 3, 4), all)
	// A cycle with no download: the bundle step ends when verify did.
	b.add(at(0, 3, 4, 4, 9), [numSteps]bool{true, true, false, true})
	// A run with nothing new: no download, no check-in of its own.
	b.add(at(0, 2, 3, 3, 3), [numSteps]bool{true, true, false, false})
	got := merge([]*recorder{a, b}).stepSummaries()
	want := []Step{
		{"index", Summary{Count: 5, P50: 2, P90: 4, P99: 4, Max: 4}},
		{"verify", Summary{Count: 5, P50: 1, P90: 1, P99: 1, Max: 1}},
		{"bundle", Summary{Count: 3, P50: 4, P90: 8, P99: 8, Max: 8}},
		{"checkin", Summary{Count: 4, P50: 3, P90: 7, P99: 7, Max: 7}},
		{"cycle", Summary{Count: 5, P50: 9, P90: 20, P99: 20, Max: 20}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d steps, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
