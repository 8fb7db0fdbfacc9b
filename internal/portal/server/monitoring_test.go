package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/store"
)

// fleetOf registers servers under key "mon" in each state: web1, web2 up
// to date; db1 out of date; old1 on an unknown kernel; gone silent for
// three days.
func fleetOf(t *testing.T, p *portal) {
	t.Helper()
	ctx := context.Background()
	p.mustPublish(t, 1, p.now.Add(-96*time.Hour))
	p.mustPublish(t, 2, p.now.Add(-72*time.Hour))
	p.addKey(t, store.Key{Key: "mon"})
	add := func(host, ip, buildID string, level int, checkin time.Time) {
		s := &store.Server{ID: "srv-" + host, SecretHash: auth.HashSecret("x"), Hostname: host, IP: ip, Registered: p.now.Add(-100 * time.Hour)}
		if err := p.st.Register(ctx, "mon", s); err != nil {
			t.Fatal(err)
		}
		if err := p.st.CheckIn(ctx, s.ID, store.Report{Hostname: host, IP: ip, Release: fakekernel.Release, BuildID: buildID,
			KernelID: kernel.KernelID(fakekernel.Version), Level: level, LastResult: "ok", At: checkin}); err != nil {
			t.Fatal(err)
		}
	}
	recent := p.now.Add(-time.Hour)
	add("web1", "192.0.2.10", fakekernel.BuildID, 2, recent)
	add("web2", "192.0.2.11", fakekernel.BuildID, 2, recent)
	add("db1", "192.0.2.20", fakekernel.BuildID, 1, recent)
	add("old1", "192.0.2.30", "0123456789abcdef0123456789abcdef01234567", 0, recent)
	add("gone", "192.0.2.40", fakekernel.BuildID, 2, p.now.Add(-72*time.Hour))
}

func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNagiosAPI(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		fleetOf(t, p)
		want := "1 machines are OUTOFDATE! 1 machines are UNSUPPORTED! 1 machines are INACTIVE!|uptodate=2;outofdate=1;unsupported=1;inactive=1\n" +
			"db1 (192.0.2.20) is OUTOFDATE\nold1 (192.0.2.30) is UNSUPPORTED\ngone (192.0.2.40) is INACTIVE\n"
		for _, path := range []string{"/api/kcare/nagios/mon", "/admin/api/kcare/nagios/mon"} {
			if code, body := getText(t, p.http.URL+path); code != 200 || body != want {
				t.Errorf("GET %s: %d\n%s\nwant\n%s", path, code, body, want)
			}
		}
		// KernelCare's answer names the key asked about; a key with no
		// servers answers the same. Text in the path is escaped.
		for path, want := range map[string]string{
			"/api/kcare/nagios/nokey":          "Servers not found for key nokey\n",
			"/admin/api/kcare/nagios/nokey":    "Servers not found for key nokey\n",
			"/api/kcare/nagios/no%0Akey%7C1=2": `Servers not found for key no\x0akey\x7c1=2` + "\n",
		} {
			if code, body := getText(t, p.http.URL+path); code != 404 || body != want {
				t.Errorf("GET %s: %d %q, want 404 %q", path, code, body, want)
			}
		}
	})
}

// TestInactiveAfterAge: a server that stops checking in becomes inactive
// once the configured age has passed, on the portal's clock.
func TestInactiveAfterAge(t *testing.T) {
	p := newPortal(t, "sqlite")
	fleetOf(t, p)
	_, body := getText(t, p.http.URL+"/api/kcare/nagios/mon")
	if !strings.Contains(body, "inactive=1") {
		t.Fatalf("before: %s", body)
	}
	p.now = p.now.Add(46 * time.Hour) // web1, web2, db1, old1 last checked in 47h ago
	_, body = getText(t, p.http.URL+"/api/kcare/nagios/mon")
	if !strings.Contains(body, "inactive=1") {
		t.Errorf("at 47h: %s; want still one inactive", body)
	}
	p.now = p.now.Add(2 * time.Hour) // 49h
	_, body = getText(t, p.http.URL+"/api/kcare/nagios/mon")
	if !strings.HasPrefix(body, "5 machines are INACTIVE!|uptodate=0;outofdate=0;unsupported=0;inactive=5\n") {
		t.Errorf("past 48h: %s; want all five inactive", body)
	}
}

// TestMetrics: /metrics passes promtool and its gauges match the Nagios
// perfdata for the same fleet.
func TestMetrics(t *testing.T) {
	p := newPortal(t, "sqlite")
	fleetOf(t, p)
	_, nag := getText(t, p.http.URL+"/api/kcare/nagios/mon")
	code, m := getText(t, p.http.URL+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, st := range []string{"uptodate", "outofdate", "unsupported", "inactive"} {
		re := regexp.MustCompile(`(?m)^kcare_servers\{feed="main",key_id="` + p.srv.KeyID("mon") + `",note="",state="` + st + `"\} (\d+)$`)
		got := re.FindStringSubmatch(m)
		perf := regexp.MustCompile(st + `=(\d+)`).FindStringSubmatch(nag)
		if got == nil || perf == nil || got[1] != perf[1] {
			t.Errorf("kcare_servers state=%s: metrics %v, nagios perfdata %v", st, got, perf)
		}
	}
	for _, want := range []string{`kcare_patchsets{feed="main",state="enabled"} 2`, "kcare_patch_levels 2", "kcare_build_info{", `kcare_http_requests_total{code="200",route="GET /api/kcare/nagios/{key}"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found (Debian's prometheus package)")
		}
		t.Skip("promtool not found")
	}
	f := filepath.Join(t.TempDir(), "metrics.txt")
	os.WriteFile(f, []byte(m), 0o644)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(m)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

}

// TestNagiosReseller: the reseller path reports the servers in the
// reseller's IP ranges, with KernelCare's error bodies.
func TestNagiosReseller(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		fleetOf(t, p)
		rs := p.st.(store.ResellerStore)
		ctx := context.Background()
		if err := rs.AddReseller(ctx, &store.Reseller{Login: "acme", CIDRs: []string{"192.0.2.16/28", "192.0.2.40"}}); err != nil {
			t.Fatal(err)
		}
		if code, body := getText(t, p.http.URL+"/api/kcare/nagios-res/acme/whatever"); code != 404 || body != "Registration token not found for reseller\n" {
			t.Errorf("before a token: %d %q", code, body)
		}
		tok := auth.NewSecret()
		if err := rs.SetResellerToken(ctx, "acme", auth.HashSecret(tok)); err != nil {
			t.Fatal(err)
		}
		// 192.0.2.16/28 holds db1 (.20) and old1 (.30); web1 and web2 are outside.
		want := "1 machines are OUTOFDATE! 1 machines are UNSUPPORTED! 1 machines are INACTIVE!|uptodate=0;outofdate=1;unsupported=1;inactive=1\n" +
			"db1 (192.0.2.20) is OUTOFDATE\nold1 (192.0.2.30) is UNSUPPORTED\ngone (192.0.2.40) is INACTIVE\n"
		if code, body := getText(t, p.http.URL+"/api/kcare/nagios-res/acme/"+tok); code != 200 || body != want {
			t.Errorf("reseller report: %d\n%s\nwant\n%s", code, body, want)
		}
		if code, body := getText(t, p.http.URL+"/api/kcare/nagios-res/acme/"+tok+"x"); code != 404 || body != "Registration token not found for reseller\n" {
			t.Errorf("wrong token: %d %q", code, body)
		}
		if code, body := getText(t, p.http.URL+"/api/kcare/nagios-res/nobody/"+tok); code != 404 || body != "Reseller not found\n" {
			t.Errorf("unknown reseller: %d %q", code, body)
		}
		if err := rs.AddReseller(ctx, &store.Reseller{Login: "acme"}); !errors.Is(err, store.ErrExists) {
			t.Errorf("second AddReseller: %v, want ErrExists", err)
		}
		if err := rs.AddReseller(ctx, &store.Reseller{Login: "bad", CIDRs: []string{"not-a-cidr"}}); !errors.Is(err, store.ErrInvalidInput) {
			t.Errorf("AddReseller with a bad CIDR: %v, want ErrInvalidInput", err)
		}
	})
}
