package server_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestWireGolden pins the agent API's and the REST API's answers, status
// and body, byte for byte, in testdata/wire.golden: a change to the wire
// format shows as a diff here. Values that differ on every run (server
// ids and secrets, signatures) are named by placeholders.
func TestWireGolden(t *testing.T) {
	p := newPortal(t, "sqlite")
	ctx := context.Background()
	p.mustPublish(t, 1, p.now.Add(-72*time.Hour))
	p.mustPublish(t, 2, p.now.Add(-24*time.Hour))
	var out strings.Builder
	placeholders := map[string]string{}
	var lastBody string
	call := func(method, path string, hdr map[string]string, contentType, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, p.http.URL+path, strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		lastBody = string(b)
		fmt.Fprintf(&out, "%s %s\n%d %s\n%s\n", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	form := "application/x-www-form-urlencoded"
	admin := map[string]string{"X-Api-Key": p.admin}
	ro := map[string]string{"X-Api-Key": p.ro}

	// The agent API.
	call("POST", "/admin/api/register", nil, form, url.Values{"key": {"nosuchkey"}, "hostname": {"web1"}}.Encode())
	p.addKey(t, store.Key{Key: "k1-wire-golden", Note: "web", Limit: 5, Sticky: "2026-11-20"})
	call("POST", "/admin/api/register", nil, form, url.Values{"key": {"k1-wire-golden"}, "hostname": {"web1"}}.Encode())
	id, secret := jsonField(lastBody, "server_id"), jsonField(lastBody, "server_secret")
	placeholders[id], placeholders[secret] = "SERVER-ID", "SERVER-SECRET"
	agentAuth := map[string]string{"Authorization": basic(id, secret)}
	call("GET", "/api/v1/license", agentAuth, "", "")
	ci := `{"hostname":"web1","release":"` + fakekernel.Release + `","build_id":"` + fakekernel.BuildID + `","kernel_id":"` +
		kernel.KernelID(fakekernel.Version) + `","level":2,"effective_release":"6.1.0-56.kcare2-amd64","result":"ok","agent_version":"1.0.0","tags":"env:prod"}`
	call("POST", "/api/v1/checkin", agentAuth, "application/json", ci)
	call("POST", "/api/v1/checkin", agentAuth, "application/json", `{"hostname":"bad host"}`)
	// A run: the check-in, answered with the signed index.
	call("POST", "/api/v1/run", agentAuth, "application/json", ci)
	call("POST", "/api/v1/run?prefix=6h", agentAuth, "application/json", ci)
	call("POST", "/api/v1/run", agentAuth, "application/json", `{"hostname":"web1"}`)
	call("POST", "/api/v1/run", agentAuth, "application/json", `{"hostname":"bad host"}`)
	call("GET", "/api/v1/license", map[string]string{"Authorization": basic(id, "wrong")}, "", "")
	call("GET", "/api/v1/index/nothex", agentAuth, "", "")
	if err := p.st.AddIPLicense(ctx, &store.IPLicense{CIDR: "127.0.0.0/8", Created: p.now}); err != nil {
		t.Fatal(err)
	}
	call("GET", "/api/v1/license", nil, "", "")
	call("POST", "/api/v1/unregister", nil, "", "")
	call("GET", "/blobs/sha256/"+strings.Repeat("0", 64), nil, "", "")

	// The REST API.
	call("GET", "/admin/api/servers", nil, "", "")
	call("GET", "/admin/api/servers?key=k1-wire-golden", admin, "", "")
	call("GET", "/admin/api/servers?is_updated=maybe", admin, "", "")
	call("GET", "/admin/api/keys/", admin, "", "")
	call("GET", "/admin/api/keys/", ro, "", "")
	call("POST", "/admin/api/keys/", admin, "application/json", `{"key":"k2-wire-golden","server_limit":2,"ip_ranges":["192.0.2.0/24"]}`)
	call("POST", "/admin/api/keys/", admin, "application/json", `{"key":"k2-wire-golden"}`)
	call("POST", "/admin/api/keys/", ro, "application/json", `{"key":"k3-wire-golden"}`)
	call("DELETE", "/admin/api/keys/k2-wire-golden", admin, "", "")
	call("GET", "/admin/api/feeds/", admin, "", "")
	call("POST", "/admin/api/feeds/", admin, "application/json", `{"name":"slow","deploy_after":48}`)
	call("GET", "/admin/api/patchsets/?feed=main", admin, "", "")
	call("POST", "/admin/api/patchsets/manage?feed=main&action=undeploy-downto&patchset=K20261126_01", admin, "", "")
	call("POST", "/admin/api/patchsets/manage?feed=main&action=explode&patchset=K20261126_01", admin, "", "")
	call("POST", "/admin/api/patchsets/manage?feed=main&action=enable&patchset=K20000101_01", admin, "", "")
	call("GET", "/admin/api/kcare/patchset/k1-wire-golden", nil, "", "")
	call("GET", "/admin/api/kcare/patchset/nosuchkey", nil, "", "")
	call("GET", "/admin/api/servers?only_count=true", admin, "", "")
	call("GET", "/admin/api/servers?hostname=web%25&checkin_age=-1", admin, "", "")
	call("GET", "/admin/api/servers?sort=ip", admin, "", "")
	call("GET", "/admin/api/servers?updated_age=3", admin, "", "")
	call("POST", "/admin/api/keys/", admin, form, "key=k1-wire-golden&note=changed")
	call("DELETE", "/admin/api/keys/nosuchkey", admin, "", "")
	call("DELETE", "/admin/api/feeds/slow", admin, "", "")
	call("DELETE", "/admin/api/feeds/slow", admin, "", "")
	call("GET", "/admin/api/users/", ro, "", "")
	call("POST", "/admin/api/set_tags?server_id=nosuchserver&tags=a;b", admin, "", "")
	call("POST", "/admin/api/patchsets/manage?feed=main&feed=nosuchfeed&action=enable&patchset=K20261126_01", admin, "", "")
	call("GET", "/admin/api/nosuchroute", nil, "", "")
	call("POST", "/admin/api/delete_server?hostname=nosuchhost", admin, "", "")
	call("DELETE", "/admin/api/servers?checkin_age=0", admin, "", "")
	call("GET", "/api/v1/mirror/levels?since=2026-11-01T00:00:00Z", ro, "", "")
	call("POST", "/api/v1/unregister", agentAuth, "", "")
	data, sig := bundleFor(t, publisher, 3)
	code, body := p.publish(t, p.admin, data, sig, p.now.Add(-time.Hour), "test")
	fmt.Fprintf(&out, "POST /api/v1/publish\n%d\n%s\n", code, body)
	code, body = p.publish(t, p.admin, data, sig, time.Time{}, "")
	fmt.Fprintf(&out, "POST /api/v1/publish\n%d\n%s\n", code, body)

	got := out.String()
	for v, name := range placeholders {
		got = strings.ReplaceAll(got, v, name)
	}
	got = regexp.MustCompile(`"signature": ?"[^"]*"`).ReplaceAllString(got, `"signature":"SIGNATURE"`)
	compareGolden(t, filepath.Join("testdata", "wire.golden"), got)
}

func jsonField(body, name string) string {
	m := regexp.MustCompile(`"` + name + `":"([^"]*)"`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// compareGolden compares got with the file at path, or with -update
// writes it.
func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (go test -update writes it): %v", err)
	}
	if !bytes.Equal(want, []byte(got)) {
		wl, gl := strings.Split(string(want), "\n"), strings.Split(got, "\n")
		for i := 0; i < max(len(wl), len(gl)); i++ {
			var w, g string
			if i < len(wl) {
				w = wl[i]
			}
			if i < len(gl) {
				g = gl[i]
			}
			if w != g {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s", path, i+1, g, w)
			}
		}
	}
}
