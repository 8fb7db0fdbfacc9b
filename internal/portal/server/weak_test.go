package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address src.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext}}
}

func do(t *testing.T, c *http.Client, method, u string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestKeyGuessingThrottled: wrong activation keys from one address, on
// registration, the Nagios key paths, the per-key patchset path and the
// reseller path, soon get 429 there; the agent on 127.0.0.1 registers and
// reads its Nagios report all the while.
func TestKeyGuessingThrottled(t *testing.T) {
	p := newPortal(t, "sqlite")
	fleetOf(t, p) // key "mon" with servers
	p.addKey(t, store.Key{Key: "fleet"})
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	register := func(c *http.Client, key string) (int, string) {
		return do(t, c, "POST", p.http.URL+"/admin/api/register", form, url.Values{"key": {key}, "hostname": {"web1"}}.Encode())
	}
	guesses := []struct {
		name string
		src  string
		try  func(c *http.Client, i int) (int, string)
	}{
		{"register", "127.0.0.2", func(c *http.Client, i int) (int, string) { return register(c, fmt.Sprintf("guess-%d", i)) }},
		{"nagios", "127.0.0.3", func(c *http.Client, i int) (int, string) {
			return do(t, c, "GET", fmt.Sprintf("%s/api/kcare/nagios/guess-%d", p.http.URL, i), nil, "")
		}},
		{"admin_nagios", "127.0.0.4", func(c *http.Client, i int) (int, string) {
			return do(t, c, "GET", fmt.Sprintf("%s/admin/api/kcare/nagios/guess-%d", p.http.URL, i), nil, "")
		}},
		{"patchset", "127.0.0.5", func(c *http.Client, i int) (int, string) {
			return do(t, c, "GET", fmt.Sprintf("%s/admin/api/kcare/patchset/guess-%d", p.http.URL, i), map[string]string{"X-Api-Key": p.ro}, "")
		}},
		{"reseller", "127.0.0.6", func(c *http.Client, i int) (int, string) {
			return do(t, c, "GET", fmt.Sprintf("%s/api/kcare/nagios-res/acme/guess-%d", p.http.URL, i), nil, "")
		}},
	}
	const tries = 40
	for _, g := range guesses {
		t.Run(g.name, func(t *testing.T) {
			c := clientFrom(g.src)
			first429 := -1
			for i := 0; i < tries; i++ {
				code, body := g.try(c, i)
				if code == 429 && first429 < 0 {
					first429 = i
					if body != `{"error":"too-many-attempts"}`+"\n" {
						t.Errorf("429 body %q", body)
					}
				}
				if first429 >= 0 && code != 429 {
					t.Errorf("guess %d from %s: %d after a 429", i, g.src, code)
				}
			}
			if first429 < 0 {
				t.Fatalf("%d wrong keys from %s: never 429", tries, g.src)
			}
			// The right key from the throttled address waits too.
			if code, _ := do(t, c, "GET", p.http.URL+"/api/kcare/nagios/mon", nil, ""); code != 429 {
				t.Errorf("the right key from the throttled %s: %d, want 429", g.src, code)
			}
			// The agent on 127.0.0.1 is not held back.
			local := clientFrom("127.0.0.1")
			if code, body := register(local, "fleet"); code != 200 || !strings.Contains(body, "server_secret") {
				t.Errorf("register from 127.0.0.1: %d %s", code, body)
			}
			if code, body := do(t, local, "GET", p.http.URL+"/api/kcare/nagios/mon", nil, ""); code != 200 || !strings.Contains(body, "|uptodate=2;") {
				t.Errorf("Nagios from 127.0.0.1: %d %s", code, body)
			}
		})
	}
	// A few wrong keys (a typo) are answered as before.
	if code, body := register(clientFrom("127.0.0.1"), "typo"); code != 400 || body != `{"error":"invalid-key"}`+"\n" {
		t.Errorf("one wrong key from 127.0.0.1: %d %s", code, body)
	}
}

// TestBlobRangesLimited: a blob request with many ranges is refused with
// 416; a few ranges are served.
func TestBlobRangesLimited(t *testing.T) {
	p := newPortal(t, "sqlite")
	p.mustPublish(t, 1, p.now.Add(-time.Hour))
	data, _ := bundleFor(t, publisher, 1)
	u := p.http.URL + "/blobs/sha256/" + bundle.Digest(data)
	resp, _ := get(t, u, map[string]string{"Range": "bytes=0-0,10-10"})
	if resp.StatusCode != 206 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") {
		t.Errorf("two ranges: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var many []string
	for i := 0; i < 64; i++ {
		many = append(many, fmt.Sprintf("%d-%d", 2*i, 2*i))
	}
	resp, body := get(t, u, map[string]string{"Range": "bytes=" + strings.Join(many, ",")})
	if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(data)) || len(body) > 200 {
		t.Errorf("64 ranges: %d, Content-Range %q, %d bytes; want 416 and a short body", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
	}
	resp, _ = get(t, u, map[string]string{"Range": "bytes=0-0,2-2,4-4,6-6,8-8"})
	if resp.StatusCode != 416 {
		t.Errorf("5 ranges: %d, want 416", resp.StatusCode)
	}
}

// TestUnknownServerAndWrongSecretAlike: an unknown server id and a wrong
// secret for a known one get the same status and body.
func TestUnknownServerAndWrongSecretAlike(t *testing.T) {
	p := newPortal(t, "sqlite")
	p.addKey(t, store.Key{Key: "fleet"})
	h := p.newHost(t)
	h.register(t, "fleet")
	for _, path := range []string{"/api/v1/license", "/api/v1/index/5f2c3b0d9d2e5a2d1b7f7d1c0a9e8b7c6d5e4f30"} {
		unknownCode, unknownBody := do(t, http.DefaultClient, "GET", p.http.URL+path, map[string]string{"Authorization": basic("nosuchserver0000", h.c.Secret)}, "")
		wrongCode, wrongBody := do(t, http.DefaultClient, "GET", p.http.URL+path, map[string]string{"Authorization": basic(h.c.ServerID, "wrong secret")}, "")
		if unknownCode != 401 || wrongCode != unknownCode || wrongBody != unknownBody {
			t.Errorf("GET %s: unknown server %d %q, wrong secret %d %q; want one 401 answer", path, unknownCode, unknownBody, wrongCode, wrongBody)
		}
	}
}

// TestHSTSOverTLS: every answer over TLS, from the agent API, the REST
// API, the web UI and errors alike, carries Strict-Transport-Security;
// none over plain HTTP.
func TestHSTSOverTLS(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	now := time.Now().UTC()
	srv := server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: t.TempDir()}, IndexKey: portalKey, Publishers: ring(t, publisher), Now: func() time.Time { return now }})})
	ts := httptest.NewTLSServer(srv.Handler())
	defer ts.Close()
	plain := httptest.NewServer(srv.Handler())
	defer plain.Close()
	if err := st.AddUser(context.Background(), &store.User{Name: "x", PasswordHash: "x", Role: "admin", Created: now}); err != nil {
		t.Fatal(err)
	}
	tok := auth.NewSecret()
	st.AddToken(context.Background(), &store.Token{Hash: auth.HashSecret(tok), User: "x", Created: now})
	c := ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, tt := range []struct {
		path string
		hdr  map[string]string
	}{
		{"/healthz", nil}, {"/keys/portal.pub", nil}, {"/api/v1/license", nil}, {"/admin/api/servers", map[string]string{"X-Api-Key": tok}},
		{"/admin/", nil}, {"/admin/login", nil}, {"/blobs/sha256/" + strings.Repeat("a", 64), nil}, {"/no/such/path", nil},
	} {
		req, _ := http.NewRequest("GET", ts.URL+tt.path, nil)
		for k, v := range tt.hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("GET %s over TLS (%d): Strict-Transport-Security %q", tt.path, resp.StatusCode, got)
		}
		presp, err := http.Get(plain.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		presp.Body.Close()
		if got := presp.Header.Get("Strict-Transport-Security"); got != "" {
			t.Errorf("GET %s over plain HTTP: Strict-Transport-Security %q, want none", tt.path, got)
		}
	}
}
