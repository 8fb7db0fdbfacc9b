package portalclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/index"
)

// TestIndexRun: with a Report, Index checks in with its question in one
// request and clears the Report; a portal without the run endpoint gets
// the question at the index path, once asked, and the Report stays for
// the caller to send.
func TestIndexRun(t *testing.T) {
	for _, tt := range []struct {
		name       string
		hasRun     bool
		want       []string
		reportKept bool
	}{
		{"portal_with_run", true, []string{"POST /api/v1/run?prefix=12h", "POST /api/v1/run?prefix=12h"}, false},
		{"older_portal", false, []string{"POST /api/v1/run?prefix=12h", "GET /api/v1/index/00112233445566778899?prefix=12h",
			"GET /api/v1/index/00112233445566778899?prefix=12h"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen = append(seen, r.Method+" "+r.URL.RequestURI())
				mu.Unlock()
				if r.URL.Path == apitype.RunPath && !tt.hasRun {
					w.WriteHeader(http.StatusMethodNotAllowed)
					return
				}
				w.Header().Set(index.SignatureHeader, "c2ln")
				w.Write([]byte("the index"))
			}))
			defer hs.Close()
			c := &Client{PatchServer: hs.URL, ServerID: "srv-1", Secret: "s", Backoff: time.Millisecond}
			for range 2 {
				c.Report = &apitype.CheckIn{BuildID: "00112233445566778899", Result: "ok"}
				body, sig, err := c.Index(context.Background(), "00112233445566778899", "12h", "")
				if err != nil || string(body) != "the index" || string(sig) != "sig" {
					t.Fatalf("Index = %q, %q, %v", body, sig, err)
				}
				if (c.Report != nil) != tt.reportKept {
					t.Errorf("Report after Index: %v, want kept %v", c.Report, tt.reportKept)
				}
			}
			if !slices.Equal(seen, tt.want) {
				t.Errorf("requests %q, want %q", seen, tt.want)
			}
		})
	}
}

// TestFailover: with several URLs of one portal, a request that cannot
// reach one (nothing listening, 503) goes to the next; the client keeps to
// the one that answered; when none answers, the error says the portal is
// unreachable, after a bounded number of tries.
func TestFailover(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	serve := func(name string, status int) *httptest.Server {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, name+" "+r.URL.Path)
			mu.Unlock()
			w.WriteHeader(status)
			w.Write([]byte(`{"type":"key","server_id":"srv-1","feed":"main"}`))
		}))
		t.Cleanup(hs.Close)
		return hs
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there now
	busy, good := serve("busy", http.StatusServiceUnavailable), serve("good", http.StatusOK)
	c := &Client{PatchServer: down.URL, Alternates: []string{busy.URL, good.URL}, ServerID: "srv-1", Secret: "s", Backoff: time.Millisecond}
	for range 2 {
		if lic, err := c.License(context.Background()); err != nil || lic.ServerID != "srv-1" {
			t.Fatalf("License through the third URL: %+v, %v", lic, err)
		}
	}
	want := []string{"busy /api/v1/license", "good /api/v1/license", "good /api/v1/license"}
	if !slices.Equal(seen, want) {
		t.Errorf("requests %q, want %q (the second straight to the one that answered)", seen, want)
	}

	seen = nil
	c = &Client{PatchServer: down.URL, Alternates: []string{busy.URL}, Backoff: time.Millisecond}
	_, err := c.License(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("License with no URL answering: %v, want ErrUnreachable", err)
	}
	if len(seen) != retries {
		t.Errorf("%d requests reached the busy portal, want %d (each of %d rounds)", len(seen), retries, retries)
	}
}

// TestRegisterNotRepeatedAfterBadGateway: a registration a load balancer
// answers with 502 or 504 (it passed it on, and the replica went away
// before answering) may have been taken: it is not sent again. One
// answered 503 (no replica to take it) is.
func TestRegisterNotRepeatedAfterBadGateway(t *testing.T) {
	for _, tt := range []struct {
		status int
		want   int // requests
		taken  bool
	}{{http.StatusBadGateway, 1, true}, {http.StatusGatewayTimeout, 1, true}, {http.StatusServiceUnavailable, retries, false}} {
		var n atomic.Int32
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.WriteHeader(tt.status)
		}))
		c := &Client{PatchServer: hs.URL, Backoff: time.Millisecond}
		_, _, err := c.Register(context.Background(), "key", "host")
		hs.Close()
		if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrMaybeTaken) != tt.taken || int(n.Load()) != tt.want {
			t.Errorf("registration answered %d: %d requests, error %v; want %d, maybe taken %v", tt.status, n.Load(), err, tt.want, tt.taken)
		}
	}
}
