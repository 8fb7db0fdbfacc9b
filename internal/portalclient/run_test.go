package portalclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
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
