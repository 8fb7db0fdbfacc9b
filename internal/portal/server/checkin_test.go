package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/store"
)

// forgedHostname is the attack run's hostname: a newline and a "|" to
// forge a Nagios line and perfdata.
const forgedHostname = "evil\nfake (192.0.2.99) is OUTOFDATE|outofdate=99"

// TestCheckInRefusesBadFields: every check-in field is held to the rule
// registration holds the hostname to; a bad one is refused with 400 and a
// code naming it, and nothing is stored.
func TestCheckInRefusesBadFields(t *testing.T) {
	p := newPortal(t, "sqlite")
	p.addKey(t, store.Key{Key: "fleet"})
	h := p.newHost(t)
	h.register(t, "fleet")
	good := `"release":"6.1.0-56-amd64","build_id":"` + fakekernel.BuildID + `","kernel_id":"` + kernel.KernelID(fakekernel.Version) +
		`","level":1,"effective_release":"6.1.0-56.kcare1-amd64","result":"ok","agent_version":"0.1.0"`
	tests := []struct {
		name, body, want string
	}{
		{"forged_hostname", `{"hostname":"evil\nfake (192.0.2.99) is OUTOFDATE|outofdate=99",` + good + `}`, "bad-hostname"},
		{"pipe_hostname", `{"hostname":"web1|x=1",` + good + `}`, "bad-hostname"},
		{"long_hostname", `{"hostname":"` + strings.Repeat("a", 254) + `",` + good + `}`, "bad-hostname"},
		{"release_newline", `{"hostname":"web1",` + strings.Replace(good, `"release":"6.1.0-56-amd64"`, `"release":"6.1.0\n|x=1"`, 1) + `}`, "bad-release"},
		{"build_id", `{"hostname":"web1",` + strings.Replace(good, fakekernel.BuildID, "not-hex", 1) + `}`, "bad-build-id"},
		{"kernel_id", `{"hostname":"web1",` + strings.Replace(good, kernel.KernelID(fakekernel.Version), "abc", 1) + `}`, "bad-kernel-id"},
		{"level", `{"hostname":"web1",` + strings.Replace(good, `"level":1`, `"level":-1`, 1) + `}`, "bad-level"},
		{"effective_release", `{"hostname":"web1",` + strings.Replace(good, `6.1.0-56.kcare1-amd64`, `6.1.0 kcare1`, 1) + `}`, "bad-effective-release"},
		{"result_control", `{"hostname":"web1",` + strings.Replace(good, `"result":"ok"`, `"result":"ok\u0000\u001b[31m"`, 1) + `}`, "bad-result"},
		{"agent_version", `{"hostname":"web1",` + strings.Replace(good, `"agent_version":"0.1.0"`, `"agent_version":"0.1.0\r\nX: y"`, 1) + `}`, "bad-agent-version"},
		{"tags", `{"hostname":"web1",` + good + `,"tags":"env:prod\nrole:x"}`, "bad-tags"},
		{"unknown_field", `{"hostname":"web1",` + good + `,"secret":"x"}`, "bad-request"},
		{"two_objects", `{"hostname":"web1",` + good + `}{"hostname":"web2"}`, "bad-request"},
		{"not_json", `hostname=web1`, "bad-request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", p.http.URL+"/api/v1/checkin", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			req.SetBasicAuth(h.c.ServerID, h.c.Secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if want := `{"error":"` + tt.want + `"}` + "\n"; resp.StatusCode != 400 || string(b) != want {
				t.Errorf("check-in: %d %s; want 400 %s", resp.StatusCode, b, want)
			}
		})
	}
	srv, err := p.st.Server(context.Background(), h.c.ServerID)
	if err != nil || srv.Hostname != "web1" || !srv.LastCheckin.IsZero() {
		t.Errorf("after refused check-ins the server is %+v, %v; want hostname web1 and no check-in", srv, err)
	}
	// The well-formed check-in is taken, with a long multi-line result.
	ci := checkInOf("web1")
	ci.Result = "patch kcare_test_l1 not enabled after load\nunload: busy\t(retried)"
	if err := h.c.CheckIn(context.Background(), ci); err != nil {
		t.Fatalf("a good check-in: %v", err)
	}
	if srv, err := p.st.Server(context.Background(), h.c.ServerID); err != nil || srv.LastResult != ci.Result || srv.Level != 1 {
		t.Errorf("after a good check-in: %+v, %v", srv, err)
	}
}

// TestNagiosEscapesStoredFields: a hostname with a newline and "|" that
// is already in the store (registered before check-ins were validated)
// stays on its server's line in the Nagios body, and forges no perfdata.
func TestNagiosEscapesStoredFields(t *testing.T) {
	p := newPortal(t, "sqlite")
	forgedFleet(t, p)
	want := "1 machines are OUTOFDATE!|uptodate=1;outofdate=1;unsupported=0;inactive=0\n" +
		`evil\x0afake (192.0.2.99) is OUTOFDATE\x7coutofdate=99 (192.0.2.20) is OUTOFDATE` + "\n"
	for _, path := range []string{"/api/kcare/nagios/mon", "/admin/api/kcare/nagios/mon"} {
		if code, body := getText(t, p.http.URL+path); code != 200 || body != want {
			t.Errorf("GET %s: %d\n%s\nwant\n%s", path, code, body, want)
		}
	}
}

// forgedFleet puts two servers under key "mon" straight into the store:
// web1 up to date, and one with forgedHostname at an old level.
func forgedFleet(t *testing.T, p *portal) {
	t.Helper()
	ctx := context.Background()
	p.mustPublish(t, 1, p.now.Add(-96*time.Hour))
	p.mustPublish(t, 2, p.now.Add(-72*time.Hour))
	p.addKey(t, store.Key{Key: "mon"})
	for _, s := range []struct {
		host, ip string
		level    int
	}{{"web1", "192.0.2.10", 2}, {forgedHostname, "192.0.2.20", 1}} {
		srv := &store.Server{ID: "srv-" + s.ip, SecretHash: auth.HashSecret("x"), Hostname: s.host, IP: s.ip, Registered: p.now.Add(-100 * time.Hour)}
		if err := p.st.Register(ctx, "mon", srv); err != nil {
			t.Fatal(err)
		}
		if err := p.st.CheckIn(ctx, srv.ID, store.Report{Hostname: s.host, IP: s.ip, Release: fakekernel.Release, BuildID: fakekernel.BuildID,
			KernelID: kernel.KernelID(fakekernel.Version), Level: s.level, LastResult: "ok", At: p.now.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
}
