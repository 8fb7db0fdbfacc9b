package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/portalclient"
	"github.com/kcare/kcare/internal/trust"
)

var publisher, portalKey, stranger = bundletest.Signer("kcare portal test publisher"), bundletest.Signer("kcare portal test index key"), bundletest.Signer("a stranger")

func ring(t testing.TB, ss ...*trust.Signer) *trust.Keyring { return bundletest.Keyring(t, ss...) }

type portal struct {
	st    store.Store
	srv   *server.Server
	http  *httptest.Server
	admin string // API token of an admin
	ro    string // API token of a read-only user
	now   time.Time
}

// testStart is where the portal's clock starts: fixed, after the fixture
// bundles' release dates, so that no test depends on the day it runs. The
// agents share the portal's clock.
var testStart = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func newPortal(t *testing.T, kind string) *portal {
	t.Helper()
	st := storetest.Open(t, kind)
	p := &portal{st: st, now: testStart}
	p.srv = server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: t.TempDir()}, IndexKey: portalKey, Publishers: ring(t, publisher), Now: func() time.Time { return p.now }})})
	p.http = httptest.NewServer(p.srv.Handler())
	t.Cleanup(p.http.Close)
	ctx := context.Background()
	for _, u := range []struct{ name, role string }{{"alice", "admin"}, {"bob", "readonly"}} {
		hash, _ := auth.HashPassword("password for " + u.name)
		if err := st.AddUser(ctx, &store.User{Name: u.name, PasswordHash: hash, Role: apitype.Role(u.role), Created: p.now}); err != nil {
			t.Fatal(err)
		}
		tok := auth.NewSecret()
		if err := st.AddToken(ctx, &store.Token{Hash: auth.HashSecret(tok), User: u.name, Created: p.now}); err != nil {
			t.Fatal(err)
		}
		if u.role == "admin" {
			p.admin = tok
		} else {
			p.ro = tok
		}
	}
	return p
}

// bundleFor makes a signed bundle of level for the fake kernel.
func bundleFor(t testing.TB, s *trust.Signer, level int) (data, sig []byte) {
	return bundletest.Bundle(t, s, level, bundletest.Options{})
}

// publish uploads a bundle as POST /api/v1/publish does.
func (p *portal) publish(t testing.TB, token string, data, sig []byte, released time.Time, channel string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile("bundle", "b.kcp")
	w.Write(data)
	w, _ = mw.CreateFormFile("signature", "b.kcp.sig")
	w.Write(sig)
	if !released.IsZero() {
		mw.WriteField("released", released.Format(time.RFC3339))
	}
	if channel != "" {
		mw.WriteField("channel", channel)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", p.http.URL+"/api/v1/publish", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if token != "" {
		req.Header.Set("X-Api-Key", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *portal) mustPublish(t testing.TB, level int, released time.Time) {
	t.Helper()
	data, sig := bundleFor(t, publisher, level)
	if code, body := p.publish(t, p.admin, data, sig, released, ""); code != 200 {
		t.Fatalf("publish level %d: %d %s", level, code, body)
	}
}

func (p *portal) addKey(t testing.TB, k store.Key) {
	t.Helper()
	if k.Feed == "" {
		k.Feed = "main"
	}
	k.Created = p.now
	if err := p.st.AddKey(context.Background(), &k); err != nil {
		t.Fatal(err)
	}
}

// host is one agent with a fake kernel, talking to the portal.
type host struct {
	a *agent.Agent
	k *fakekernel.Kernel
	c *portalclient.Client
}

func (p *portal) newHost(t *testing.T) *host {
	t.Helper()
	root := t.TempDir()
	k, err := fakekernel.New(root, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	cfg := config.Default()
	cfg.TransitionTimeout = 5 * time.Second
	return &host{
		a: &agent.Agent{Root: root, Config: cfg, Keys: ring(t, publisher, portalKey), Loader: k, Now: func() time.Time { return p.now }},
		k: k,
		c: &portalclient.Client{PatchServer: p.http.URL, Backoff: time.Millisecond},
	}
}

func (h *host) register(t *testing.T, key string) {
	t.Helper()
	id, secret, err := h.c.Register(context.Background(), key, "web1")
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	h.c.ServerID, h.c.Secret = id, secret
}

func (h *host) update(t *testing.T, o agent.UpdateOptions) (int, error) {
	t.Helper()
	_, err := h.a.Update(context.Background(), h.c, o)
	info, ierr := h.a.Info()
	if ierr != nil {
		t.Fatal(ierr)
	}
	return info.Level, err
}

func forKinds(t *testing.T, f func(t *testing.T, kind string)) {
	for _, kind := range storetest.Kinds {
		t.Run(kind, func(t *testing.T) { f(t, kind) })
	}
}

func TestRegisterLimitConcurrent(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		p.addKey(t, store.Key{Key: "limit10", Limit: 10})
		const n = 200
		var wg sync.WaitGroup
		codes := make(chan string, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				resp, err := http.PostForm(p.http.URL+"/admin/api/register", url.Values{"key": {"limit10"}, "hostname": {fmt.Sprintf("host%d", i)}})
				if err != nil {
					codes <- err.Error()
					return
				}
				defer resp.Body.Close()
				var out map[string]string
				json.NewDecoder(resp.Body).Decode(&out)
				if resp.StatusCode == 200 && out["server_id"] != "" && out["server_secret"] != "" {
					codes <- "ok"
					return
				}
				codes <- fmt.Sprintf("%d %s", resp.StatusCode, out["error"])
			}(i)
		}
		wg.Wait()
		close(codes)
		count := map[string]int{}
		for c := range codes {
			count[c]++
		}
		if count["ok"] != 10 || count["400 key-limit-reached"] != n-10 {
			t.Errorf("answers %v; want 10 ok and %d key-limit-reached", count, n-10)
		}
		if got, _ := p.st.Servers(context.Background(), store.ServerFilter{Key: "limit10"}); len(got) != 10 {
			t.Errorf("%d servers registered, want 10", len(got))
		}
	})
}

func TestRegisterRefusals(t *testing.T) {
	p := newPortal(t, "sqlite")
	p.addKey(t, store.Key{Key: "one", Limit: 1})
	p.addKey(t, store.Key{Key: "far", IPRanges: []string{"192.0.2.0/24"}})
	h := p.newHost(t)
	if _, _, err := h.c.Register(context.Background(), "nope", "web1"); !errors.Is(err, portalclient.ErrInvalidKey) {
		t.Errorf("register with an unknown key = %v, want ErrInvalidKey", err)
	}
	if _, _, err := h.c.Register(context.Background(), "far", "web1"); !errors.Is(err, portalclient.ErrIPNotAllowed) {
		t.Errorf("register from outside the key's IP range = %v, want ErrIPNotAllowed", err)
	}
	h.register(t, "one")
	if _, _, err := h.c.Register(context.Background(), "one", "web2"); !errors.Is(err, portalclient.ErrLimitReached) {
		t.Errorf("second register on a limit-1 key = %v, want ErrLimitReached", err)
	}
	// An unregistered host (no IP license) gets a clear refusal.
	anon := p.newHost(t)
	if _, err := anon.update(t, agent.UpdateOptions{}); !errors.Is(err, portalclient.ErrUnregistered) {
		t.Errorf("update without registration = %v, want ErrUnregistered", err)
	}
}

// TestAgentCycle: publish, register, update, check in, a newer level, a
// sticky key, PREFIX=48h, on both backends.
func TestAgentCycle(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		ctx := context.Background()
		p.mustPublish(t, 1, p.now.Add(-10*24*time.Hour))
		p.mustPublish(t, 2, p.now.Add(-5*24*time.Hour))
		p.addKey(t, store.Key{Key: "fleet"})
		p.addKey(t, store.Key{Key: "sticky", Sticky: p.now.Add(-3 * 24 * time.Hour).Format("2006-01-02")})

		h := p.newHost(t)
		h.register(t, "fleet")
		if level, err := h.update(t, agent.UpdateOptions{}); err != nil || level != 2 {
			t.Fatalf("first update: level %d, %v; want 2", level, err)
		}
		if err := h.c.CheckIn(ctx, apitype.CheckIn{Hostname: "web1", Release: fakekernel.Release, BuildID: fakekernel.BuildID, Level: 2, EffectiveRelease: "6.1.0-56.kcare2-amd64", Result: "ok", AgentVersion: "test"}); err != nil {
			t.Fatalf("check-in: %v", err)
		}
		srv, err := p.st.Server(ctx, h.c.ServerID)
		if err != nil || srv.Level != 2 || srv.LastCheckin.IsZero() || srv.Hostname != "web1" {
			t.Errorf("server after check-in = %+v, %v", srv, err)
		}

		// Level 3, released an hour ago.
		p.mustPublish(t, 3, p.now.Add(-time.Hour))
		if level, err := h.update(t, agent.UpdateOptions{Prefix: "48h"}); !errors.Is(err, agent.ErrNothingToDo) || level != 2 {
			t.Errorf("update with PREFIX=48h: level %d, %v; want 2, nothing to do", level, err)
		}
		if level, err := h.update(t, agent.UpdateOptions{}); err != nil || level != 3 {
			t.Errorf("update: level %d, %v; want 3", level, err)
		}

		s := p.newHost(t)
		s.register(t, "sticky")
		if level, err := s.update(t, agent.UpdateOptions{Sticky: "KEY"}); err != nil || level != 2 {
			t.Errorf("update on a key sticky before level 3: level %d, %v; want 2", level, err)
		}

		// The test channel: only PREFIX=test sees it.
		data, sig := bundleFor(t, publisher, 4)
		if code, body := p.publish(t, p.admin, data, sig, p.now.Add(-2*time.Hour), "test"); code != 200 {
			t.Fatalf("publish test level: %d %s", code, body)
		}
		if level, _ := h.update(t, agent.UpdateOptions{}); level != 3 {
			t.Errorf("stable update saw the test channel: level %d", level)
		}
		if level, err := h.update(t, agent.UpdateOptions{Prefix: "test"}); err != nil || level != 4 {
			t.Errorf("update with PREFIX=test: level %d, %v; want 4", level, err)
		}
	})
}

func TestPublishRefusals(t *testing.T) {
	p := newPortal(t, "sqlite")
	data, sig := bundleFor(t, publisher, 1)
	sdata, ssig := bundleFor(t, stranger, 1)
	tests := []struct {
		name       string
		token      string
		data, sig  []byte
		code       int
		bodyPrefix string
	}{
		{"no_token", "", data, sig, 401, "X-Api-Key"},
		{"readonly", p.ro, data, sig, 403, "admin role"},
		{"unknown_publisher", p.admin, sdata, ssig, 400, "verify bundle"},
		{"tampered", p.admin, append(bytes.Clone(data[:len(data)-1]), data[len(data)-1]^1), sig, 400, "verify bundle"},
		{"good", p.admin, data, sig, 200, ""},
		{"again", p.admin, data, sig, 409, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := p.publish(t, tt.token, tt.data, tt.sig, time.Time{}, "")
			if code != tt.code || !strings.Contains(body, tt.bodyPrefix) {
				t.Errorf("publish: %d %s; want %d containing %q", code, body, tt.code, tt.bodyPrefix)
			}
		})
	}
}

func get(t *testing.T, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestKernelCarePathsAndBlobs(t *testing.T) {
	p := newPortal(t, "sqlite")
	p.mustPublish(t, 1, p.now.Add(-72*time.Hour))
	p.mustPublish(t, 2, p.now.Add(-time.Hour))
	kid := kernel.KernelID(fakekernel.Version)
	if resp, body := get(t, p.http.URL+"/"+kid+"/version", nil); resp.StatusCode != 200 || body != "2\n" {
		t.Errorf("version: %d %q, want 2", resp.StatusCode, body)
	}
	if resp, body := get(t, p.http.URL+"/48h/"+kid+"/version", nil); resp.StatusCode != 200 || body != "1\n" {
		t.Errorf("48h version: %d %q, want 1", resp.StatusCode, body)
	}
	if resp, _ := get(t, p.http.URL+"/"+strings.Repeat("0", 40)+"/version", nil); resp.StatusCode != 404 {
		t.Errorf("unknown kernel: %d, want 404", resp.StatusCode)
	}
	resp, body := get(t, p.http.URL+"/"+kid+"/2/kpatch.info", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "kpatch-cve: CVE-2026-1002\n") || !strings.Contains(body, "kpatch-name: 6.1.0-56-amd64/CVE-2026-1002\n") {
		t.Errorf("kpatch.info: %d %q", resp.StatusCode, body)
	}

	data, _ := bundleFor(t, publisher, 1)
	d := bundle.Digest(data)
	resp, body = get(t, p.http.URL+"/blobs/sha256/"+d, nil)
	if resp.StatusCode != 200 || body != string(data) || resp.Header.Get("ETag") != `"sha256:`+d+`"` || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("blob: %d, etag %q, cache %q, %d bytes", resp.StatusCode, resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"), len(body))
	}
	resp, body = get(t, p.http.URL+"/blobs/sha256/"+d, map[string]string{"Range": "bytes=0-9"})
	if resp.StatusCode != 206 || body != string(data[:10]) {
		t.Errorf("blob range: %d %q", resp.StatusCode, body)
	}
	resp, _ = get(t, p.http.URL+"/blobs/sha256/"+d, map[string]string{"If-None-Match": `"sha256:` + d + `"`})
	if resp.StatusCode != 304 {
		t.Errorf("blob If-None-Match: %d, want 304", resp.StatusCode)
	}
	if resp, _ := get(t, p.http.URL+"/blobs/sha256/"+strings.Repeat("a", 64), nil); resp.StatusCode != 404 {
		t.Errorf("missing blob: %d, want 404", resp.StatusCode)
	}
}

func TestREST(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		p.mustPublish(t, 1, p.now.Add(-72*time.Hour))
		p.mustPublish(t, 2, p.now.Add(-24*time.Hour))
		api := func(method, path, token string, body any) (int, map[string]any) {
			var rd io.Reader
			if body != nil {
				b, _ := json.Marshal(body)
				rd = bytes.NewReader(b)
			}
			req, _ := http.NewRequest(method, p.http.URL+path, rd)
			req.Header.Set("X-Api-Key", token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			json.NewDecoder(resp.Body).Decode(&out)
			return resp.StatusCode, out
		}
		if code, _ := api("GET", "/admin/api/servers", "", nil); code != 401 {
			t.Errorf("servers without a key: %d, want 401", code)
		}
		if code, out := api("POST", "/admin/api/keys/", p.admin, map[string]any{"key": "k1", "server_limit": 5, "note": "web"}); code != 201 {
			t.Fatalf("add key: %d %v", code, out)
		}
		if code, _ := api("POST", "/admin/api/keys/", p.ro, map[string]any{"key": "k2"}); code != 403 {
			t.Errorf("add key as read-only: %d, want 403", code)
		}
		if code, out := api("POST", "/admin/api/feeds/", p.admin, map[string]any{"name": "slow", "deploy_after": 48}); code != 201 {
			t.Errorf("add feed: %d %v", code, out)
		}
		h := p.newHost(t)
		h.register(t, "k1")
		if level, err := h.update(t, agent.UpdateOptions{}); err != nil || level != 2 {
			t.Fatalf("update: %d %v", level, err)
		}
		h.c.CheckIn(context.Background(), apitype.CheckIn{Hostname: "web1", Release: fakekernel.Release, BuildID: fakekernel.BuildID, KernelID: kernel.KernelID(fakekernel.Version), Level: 2, Result: "ok"})

		code, out := api("GET", "/admin/api/servers?key=k1&is_updated=true", p.ro, nil)
		if data, _ := out["result"].([]any); code != 200 || len(data) != 1 || out["count"] != 1.0 {
			t.Errorf("servers key=k1 is_updated=true: %d %v", code, out)
		}
		code, out = api("GET", "/admin/api/kcare/patchset/k1", p.ro, nil)
		if data, _ := out["data"].([]any); code != 200 || len(data) != 1 || fmt.Sprint(data[0]) != fmt.Sprintf("[127.0.0.1 %s 2]", kernel.KernelID(fakekernel.Version)) {
			t.Errorf("kcare/patchset: %d %v", code, out)
		}
		code, out = api("GET", "/admin/api/patchsets/?feed=main", p.ro, nil)
		if data, _ := out["result"].([]any); code != 200 || len(data) != 2 {
			t.Fatalf("patchsets: %d %v", code, out)
		}
		// Undeploy the newest patchset: servers are offered level 1 again.
		newest := out["result"].([]any)[1].(map[string]any)["patchset"].(string)
		if code, out := api("POST", "/admin/api/patchsets/manage?feed=main&action=undeploy-downto&patchset="+newest, p.admin, nil); code != 200 {
			t.Fatalf("undeploy-downto: %d %v", code, out)
		}
		st, err := h.a.CheckStatus(context.Background(), h.c, agent.UpdateOptions{})
		if err != nil || st.Available != 1 {
			t.Errorf("after undeploy: status %+v, %v; want level 1 available", st, err)
		}
		if code, _ := api("DELETE", "/admin/api/keys/k1", p.admin, nil); code != 200 {
			t.Errorf("delete key: %d", code)
		}
		if _, err := h.a.CheckStatus(context.Background(), h.c, agent.UpdateOptions{}); !errors.Is(err, portalclient.ErrUnregistered) {
			t.Errorf("after the key is deleted: %v, want ErrUnregistered", err)
		}
	})
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// TestIPLicense: a server in a licensed CIDR updates without registering,
// and its check-in creates it on the portal.
func TestIPLicense(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		ctx := context.Background()
		p.mustPublish(t, 1, p.now.Add(-72*time.Hour))
		h := p.newHost(t)
		if _, err := h.update(t, agent.UpdateOptions{}); !errors.Is(err, portalclient.ErrUnregistered) {
			t.Fatalf("update before the IP license = %v, want ErrUnregistered", err)
		}
		if err := p.st.AddIPLicense(ctx, &store.IPLicense{CIDR: "127.0.0.0/8", Feed: "main", Created: p.now}); err != nil {
			t.Fatal(err)
		}
		if level, err := h.update(t, agent.UpdateOptions{}); err != nil || level != 1 {
			t.Fatalf("update under the IP license: level %d, %v; want 1", level, err)
		}
		if err := h.c.CheckIn(ctx, apitype.CheckIn{Hostname: "lab1", Release: fakekernel.Release, BuildID: fakekernel.BuildID, Level: 1, Result: "ok"}); err != nil {
			t.Fatalf("check-in under the IP license: %v", err)
		}
		list, err := p.st.Servers(ctx, store.ServerFilter{IP: "127.0.0.1"})
		if err != nil || len(list) != 1 || list[0].Key != "" || list[0].Level != 1 || list[0].Hostname != "lab1" {
			t.Errorf("servers from 127.0.0.1 = %+v, %v; want one IP-licensed server at level 1", list, err)
		}
	})
}
