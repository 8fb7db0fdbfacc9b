package store

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestZZExplore(t *testing.T) {
	ctx := context.Background()
	os.RemoveAll("/tmp/kcare-explore")
	for _, a := range [][2]string{{"/tmp/kcare-explore", ""}, {"", os.Getenv("KCARE_TEST_POSTGRES") + "&search_path=kcare_explore"}} {
		s, err := Open(ctx, a[0], a[1])
		if err != nil { t.Fatal(err) }
		s.AddFeed(ctx, &Feed{Name: "test", Channel: "test", Auto: true})
		for _, k := range seedKernels {
			for lv := 1; lv <= 3; lv++ {
				ch := "stable"
				if lv == 3 { ch = "test" }
				l := &Level{BuildID: k.buildID, KernelID: k.kernelID, Release: k.release, Level: lv,
					Patchset: "K2026112" + string(rune('0'+lv)) + "_01", Channel: ch, Digest: digest(k.buildID, lv),
					EffectiveRelease: k.release, Released: t0.Add(time.Duration(lv) * 24 * time.Hour)}
				if err := s.AddLevel(ctx, l); err != nil { t.Fatal(err) }
			}
		}
		s.AddKey(ctx, &Key{Key: "kc-bench"})
		st := time.Now()
		if err := SeedServers(ctx, s, "kc-bench", 1000000); err != nil { t.Fatal(err) }
		t.Logf("%s seeded in %v", s.Kind(), time.Since(st))
		s.Close()
	}
}
