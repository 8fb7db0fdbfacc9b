package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
)

// benchServers is how many servers the benchmarks seed: 1,000,000, or
// KCARE_BENCH_SERVERS.
func benchServers(b *testing.B) int {
	n := 1_000_000
	if v := os.Getenv("KCARE_BENCH_SERVERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("KCARE_BENCH_SERVERS=%q: want a positive number", v)
		}
	}
	return n
}

// seeded opens a fresh database of be holding n servers under key
// kc-bench, with three levels for each seeded kernel (levels 1 and 2 in
// main, 3 on the test channel), and logs how long seeding took.
func seeded(b *testing.B, be backend, n int) (Store, []Server) {
	s := be.open(b)
	ctx := context.Background()
	if err := s.AddFeed(ctx, &Feed{Name: "test", Channel: "test", Auto: true}); err != nil {
		b.Fatal(err)
	}
	for _, k := range seedKernels {
		for lv := 1; lv <= 3; lv++ {
			ch := apitype.ChannelStable
			if lv == 3 {
				ch = apitype.ChannelTest
			}
			l := &Level{BuildID: k.buildID, KernelID: k.kernelID, Release: k.release, Level: lv,
				Patchset: fmt.Sprintf("K202611%02d_01", 20+lv), Channel: ch, Digest: digest(k.buildID, lv),
				EffectiveRelease: k.release, Released: t0.Add(time.Duration(lv) * 24 * time.Hour)}
			if err := s.AddLevel(ctx, l); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.AddKey(ctx, &Key{Key: "kc-bench"}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := SeedServers(ctx, s, "kc-bench", n); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: seeded %d servers in %v", be.name, n, time.Since(start).Round(time.Millisecond))
	page, err := s.Servers(ctx, ServerFilter{Limit: 10000, Offset: n / 2})
	if err != nil {
		b.Fatal(err)
	}
	return s, page
}

// BenchmarkCheckIn is the agents' hot path: check-ins from many
// goroutines at once, spread over servers of a full table.
func BenchmarkCheckIn(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			n := benchServers(b)
			s, servers := seeded(b, be, n)
			ctx := context.Background()
			var next atomic.Int64
			b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
				b.SetParallelism(16) // many agents at once
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := int(next.Add(1))
						v := servers[i%len(servers)]
						// What an agent reports after applying a level.
						c := Report{Hostname: v.Hostname, IP: v.IP, Release: v.Release, BuildID: v.BuildID,
							KernelID: v.KernelID, Level: v.Level + 1, EffectiveRelease: v.EffectiveRelease,
							LastResult: "ok", AgentVersion: v.AgentVersion}
						if err := s.CheckIn(ctx, v.ID, c); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkServersFilter is the admin UI's server list: a page of 50
// under each filter, over a full table.
func BenchmarkServersFilter(b *testing.B) {
	yes, no := true, false
	filters := []struct {
		name string
		f    ServerFilter
	}{
		{"page", ServerFilter{}},
		{"page-offset-10000", ServerFilter{Offset: 10000}},
		{"hostname-rare", ServerFilter{Hostname: "node-0000007.example"}},
		{"hostname-common", ServerFilter{Hostname: "example.net"}},
		{"ip", ServerFilter{IP: "10.0.1.44"}},
		{"key", ServerFilter{Key: "kc-bench"}},
		{"feed", ServerFilter{Feed: "main"}},
		{"checkin-age-6d", ServerFilter{CheckinAge: 6 * 24 * time.Hour, Now: time.Now()}}, // the seed stamps check-ins with the wall clock
		{"updated", ServerFilter{IsUpdated: &yes, Now: time.Now()}},
		{"not-updated", ServerFilter{IsUpdated: &no, Now: time.Now()}},
		{"tag", ServerFilter{Tag: "rack:r07"}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			n := benchServers(b)
			s, _ := seeded(b, be, n)
			ctx := context.Background()
			for _, f := range filters {
				f.f.Limit = 50
				b.Run(fmt.Sprintf("servers=%d/%s", n, f.name), func(b *testing.B) {
					for b.Loop() {
						if _, err := s.Servers(ctx, f.f); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
