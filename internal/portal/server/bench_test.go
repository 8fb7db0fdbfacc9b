package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
)

// benchAgent is a registered server as BenchmarkAgentRun drives it.
type benchAgent struct {
	id, secret string
	checkin    []byte
}

// BenchmarkAgentRun is the portal's side of an agent's run when nothing
// is new: the signed index for its kernel and a check-in, through the
// portal's whole handler (routing, authentication, the store, the
// signature) but without the network, from 32 agents at once over 1,000
// registered among the seeded servers. ns/op is the server's time per
// run; with -cpu 1 it is its CPU per run.
func BenchmarkAgentRun(b *testing.B) {
	for _, kind := range storetest.Kinds {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			st := storetest.Open(b, kind)
			n := storetest.BenchServers(b)
			for _, k := range []string{"seeded", "agents"} {
				if err := st.AddKey(ctx, &store.Key{Key: k, Feed: "main"}); err != nil {
					b.Fatal(err)
				}
			}
			if n > 0 {
				start := time.Now()
				if err := store.SeedServers(ctx, st, "seeded", n); err != nil {
					b.Fatal(err)
				}
				b.Logf("%s: seeded %d servers in %s", kind, n, time.Since(start).Round(time.Millisecond))
			}
			p := &portal{st: st, now: testStart}
			c := core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: b.TempDir()}, IndexKey: portalKey,
				Publishers: ring(b, publisher), Now: func() time.Time { return testStart }})
			p.srv = server.New(server.Config{Core: c})
			h := p.srv.Handler()
			data, sig := bundleFor(b, publisher, 1)
			if _, err := c.Publish(ctx, core.CLI, data, sig, core.PublishOptions{Released: testStart.Add(-time.Hour)}); err != nil {
				b.Fatal(err)
			}
			agents := make([]benchAgent, 1000)
			for i := range agents {
				id, secret, err := c.Register(ctx, "agents", fmt.Sprintf("agent-%04d.example.net", i), "127.0.0.1")
				if err != nil {
					b.Fatal(err)
				}
				ci, _ := json.Marshal(apitype.CheckIn{Hostname: fmt.Sprintf("agent-%04d.example.net", i), Release: fakekernel.Release,
					BuildID: fakekernel.BuildID, KernelID: kernel.KernelID(fakekernel.Version), Level: 1,
					EffectiveRelease: "6.1.0-56.kcare1-amd64", Result: "ok", AgentVersion: "bench"})
				agents[i] = benchAgent{id: id, secret: secret, checkin: ci}
			}
			var next atomic.Int64
			b.ResetTimer()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					a := &agents[int(next.Add(1))%len(agents)]
					if err := benchRun(h, a); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchRun makes one run's requests of a, checking each answer.
func benchRun(h http.Handler, a *benchAgent) error {
	req := httptest.NewRequest(http.MethodGet, apitype.IndexPath+fakekernel.BuildID, nil)
	req.SetBasicAuth(a.id, a.secret)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK || w.Header().Get(index.SignatureHeader) == "" {
		return fmt.Errorf("index: %d %s", w.Code, w.Body)
	}
	req = httptest.NewRequest(http.MethodPost, apitype.CheckInPath, bytes.NewReader(a.checkin))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(a.id, a.secret)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b, _ := io.ReadAll(w.Body)
		return fmt.Errorf("check-in: %d %s", w.Code, b)
	}
	return nil
}
