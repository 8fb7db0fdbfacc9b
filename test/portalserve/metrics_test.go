package portalserve

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/portalclient"
)

// leakKey is an activation key that must never be seen in /metrics.
const leakKey = "k-metrics-7d3f0a9c2b51e8"

// TestMetricsCarryNoKey: with a key that has a registered server,
// /metrics names the key by its note and a short hash, and the key string
// appears nowhere in the body.
func TestMetricsCarryNoKey(t *testing.T) {
	p := newPortal(t)
	p.eportal("", "key", "add", "--key", leakKey, "--note", "web servers")
	p.start("")
	c := &portalclient.Client{PatchServer: p.url, HTTP: from("127.0.0.1")}
	if _, _, err := c.Register(context.Background(), leakKey, "web1"); err != nil {
		t.Fatalf("register: %v", err)
	}
	code, body := get(t, from("127.0.0.1"), p.url+"/metrics", nil)
	if code != 200 {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	for _, leak := range []string{leakKey, leakKey[:12], leakKey[len(leakKey)-12:]} {
		if i := strings.Index(body, leak); i >= 0 {
			t.Errorf("/metrics holds %q of the activation key: %s", leak, lineAt(body, i))
		}
	}
	// The server registered but never checked in: inactive.
	want := regexp.MustCompile(`(?m)^kcare_servers\{feed="main",key_id="[0-9a-f]{12}",note="web servers",state="inactive"\} 1$`)
	if !want.MatchString(body) {
		t.Errorf("/metrics lacks the key's inactive server by key_id and note; kcare_servers lines:\n%s", grepLines(body, "kcare_servers{"))
	}
}

// TestMetricsRestricted: with --metrics-token-file and --metrics-allow,
// /metrics answers 401 without the bearer token (or with a wrong one), 403
// from an address outside the allowed CIDRs, and 200 otherwise.
func TestMetricsRestricted(t *testing.T) {
	p := newPortal(t)
	tokFile := filepath.Join(t.TempDir(), "metrics.token")
	const tok = "scrape-token-5b1f0c7e9a"
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start("", "--metrics-token-file", tokFile, "--metrics-allow", "127.0.0.1/32")
	if strings.Contains(p.logText(), tok) {
		t.Errorf("eportal serve logged the metrics token:\n%s", p.logText())
	}
	bearer := map[string]string{"Authorization": "Bearer " + tok}
	tests := []struct {
		name string
		src  string
		hdr  map[string]string
		code int
	}{
		{"no_token", "127.0.0.1", nil, 401},
		{"wrong_token", "127.0.0.1", map[string]string{"Authorization": "Bearer " + tok + "x"}, 401},
		{"basic_auth", "127.0.0.1", map[string]string{"Authorization": "Basic c2NyYXBlOnRva2Vu"}, 401},
		{"outside_cidr", "127.0.0.2", bearer, 403},
		{"outside_cidr_no_token", "127.0.0.2", nil, 403},
		{"allowed", "127.0.0.1", bearer, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, from(tt.src), p.url+"/metrics", tt.hdr)
			if code != tt.code {
				t.Errorf("GET /metrics from %s: %d, want %d\n%.200s", tt.src, code, tt.code, body)
			}
			if code == 200 && !strings.Contains(body, "kcare_build_info{") {
				t.Errorf("GET /metrics: 200 without the metrics:\n%.200s", body)
			}
			if code != 200 && strings.Contains(body, "kcare_") {
				t.Errorf("refused GET /metrics still shows metrics:\n%.200s", body)
			}
		})
	}
	// Other routes are not behind the metrics token.
	if code, body := get(t, from("127.0.0.2"), p.url+"/healthz", nil); code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz from 127.0.0.2: %d %q", code, body)
	}
}

// TestMetricsTokenFileRefused: a token file that is missing or empty stops
// eportal serve at start with a clear message; the token is never taken
// from the command line.
func TestMetricsTokenFileRefused(t *testing.T) {
	p := newPortal(t)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--metrics-token-file", filepath.Join(t.TempDir(), "missing")}, "--metrics-token-file"},
		{[]string{"--metrics-token-file", empty}, "is empty"},
		{[]string{"--metrics-allow", "not-a-cidr"}, "--metrics-allow"},
	} {
		out, err := runServe(p, tt.args...)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("eportal serve %s: %v\n%s\nwant a refusal naming %q", strings.Join(tt.args, " "), err, out, tt.want)
		}
	}
}

func lineAt(s string, i int) string {
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end := strings.IndexByte(s[i:], '\n')
	if end < 0 {
		return s[start:]
	}
	return s[start : i+end]
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
