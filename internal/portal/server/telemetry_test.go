package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/taint"
)

// TestCheckInTelemetry: the kernel's health a check-in reports is kept
// with the server, its boot dated by its uptime on the portal's clock; a
// telemetry object whose flags do not match its mask, or with a field
// the portal does not know, is refused and nothing is stored.
func TestCheckInTelemetry(t *testing.T) {
	for _, kind := range storetest.Kinds {
		t.Run(kind, func(t *testing.T) {
			p := newPortal(t, kind)
			p.addKey(t, store.Key{Key: "fleet"})
			h := p.newHost(t)
			h.register(t, "fleet")
			ci := checkInOf("web1")
			applied := p.now.Add(-10 * time.Minute)
			ci.Telemetry = &apitype.Telemetry{BootID: "6a1c8f0e-2b7d-4a3e-9c51-0f4e8d2b7a19", Uptime: 3600,
				Taint: uint64(taint.Warn | taint.Livepatch | taint.OutOfTree | taint.Unsigned), TaintFlags: "WOEK",
				Warnings: 1, Oopses: 0, CountsFrom: apitype.CountsSysfs,
				LastApply: &apitype.ApplyReport{Level: 1, OK: true, At: applied, BootID: "6a1c8f0e-2b7d-4a3e-9c51-0f4e8d2b7a19"}}
			if err := h.c.CheckIn(context.Background(), ci); err != nil {
				t.Fatalf("check-in with telemetry: %v", err)
			}
			got, err := p.st.ServerHealth(context.Background(), h.c.ServerID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Booted != p.now.Add(-time.Hour) || got.Taint.Added(got.Apply.Taint) != taint.Warn || got.Warnings-got.Apply.Warnings != 1 ||
				got.Level != 1 || !got.Apply.OK || !got.Apply.At.Equal(applied) {
				t.Errorf("stored health %+v, apply %+v", got, got.Apply)
			}

			for _, tt := range []struct{ name, replace, with, want string }{
				{"flags_disagree", `"taint_flags":"WOEK"`, `"taint_flags":"OEK"`, "bad-telemetry"},
				{"unknown_field", `"uptime":3600`, `"uptime":3600,"load":1`, "bad-request"},
			} {
				t.Run(tt.name, func(t *testing.T) {
					body := `{"hostname":"web2","release":"6.1.0-56-amd64","level":2,"result":"ok","telemetry":{"boot_id":"0d3b5f7e-9a1c-4e2b-8d6f-3a5c7e9b1d2f","uptime":3600,"taint":45568,"taint_flags":"WOEK","warn_count":0,"oops_count":0,"counts_from":"sysfs"}}`
					req, _ := http.NewRequest("POST", p.http.URL+"/api/v1/checkin", strings.NewReader(strings.Replace(body, tt.replace, tt.with, 1)))
					req.SetBasicAuth(h.c.ServerID, h.c.Secret)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := `{"error":"` + tt.want + `"}` + "\n"; resp.StatusCode != 400 || string(b) != want {
						t.Errorf("check-in: %d %s; want 400 %s", resp.StatusCode, b, want)
					}
					if got, _ := p.st.ServerHealth(context.Background(), h.c.ServerID); got.BootID != ci.Telemetry.BootID {
						t.Errorf("after a refused check-in the boot id is %s", got.BootID)
					}
				})
			}
		})
	}
}
