// Package ui tests eportal's admin web UI: over HTTP for the rules every
// route keeps, and in a real headless Chromium for the operator's walk.
package ui

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/portalclient"
	"github.com/kcare/kcare/internal/trust"
)

var publisher, portalKey = bundletest.Signer("kcare ui test publisher"), bundletest.Signer("kcare ui test index key")

func ring(t testing.TB, ss ...*trust.Signer) *trust.Keyring { return bundletest.Keyring(t, ss...) }

// portal is an eportal on 127.0.0.1 with an admin (alice) and a
// read-only user (bob), and a clock the test moves.
type portal struct {
	st    store.Store
	srv   *server.Server
	http  *httptest.Server
	mu    sync.Mutex
	clock time.Time
}

const (
	alicePassword = "alice's long password"
	bobPassword   = "bob's long password"
)

// testStart is where the portal's clock starts: after the bundles' release
// dates (bundletest: day `level` of November 2026), and fixed, so that no
// test depends on the day it runs. The agents share the portal's clock.
var testStart = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func (p *portal) now() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clock
}

func (p *portal) advance(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clock = p.clock.Add(d)
}

func newPortal(t testing.TB) *portal {
	t.Helper()
	st := storetest.Open(t, "sqlite")
	p := &portal{st: st, clock: testStart}
	srv := server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: t.TempDir()}, IndexKey: portalKey, Publishers: ring(t, publisher), Now: p.now})})
	p.srv = srv
	p.http = httptest.NewServer(srv.Handler())
	t.Cleanup(p.http.Close)
	for _, u := range []struct{ name, pw, role string }{{"alice", alicePassword, "admin"}, {"bob", bobPassword, "readonly"}} {
		hash, err := auth.HashPassword(u.pw)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.AddUser(context.Background(), &store.User{Name: u.name, PasswordHash: hash, Role: apitype.Role(u.role)}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// bundleFor makes a signed bundle of level for the fake kernel.
func bundleFor(t testing.TB, level int) (data, sig []byte) {
	return bundletest.Bundle(t, publisher, level, bundletest.Options{})
}

// host is one agent with a fake kernel, talking to the portal.
type host struct {
	a *agent.Agent
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
		a: &agent.Agent{Root: root, Config: cfg, Keys: ring(t, publisher, portalKey), Loader: k, Now: p.now},
		c: &portalclient.Client{PatchServer: p.http.URL, Backoff: time.Millisecond},
	}
}

func (h *host) register(key, hostname string) error {
	id, secret, err := h.c.Register(context.Background(), key, hostname)
	if err != nil {
		return err
	}
	h.c.ServerID, h.c.Secret = id, secret
	return nil
}

// available is the newest level the portal's index offers the host.
func (h *host) available(t *testing.T) int {
	t.Helper()
	st, err := h.a.CheckStatus(context.Background(), h.c, agent.UpdateOptions{})
	if err != nil {
		t.Fatalf("check status: %v", err)
	}
	return st.Available
}

// browser is an HTTP client with a cookie jar, as a browser signs in.
type browser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func (p *portal) client(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: p.http.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get returns the status, body and the first CSRF token in the page.
func (b *browser) get(path string) (int, string, string) {
	resp, err := b.c.Get(b.base + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	tok := ""
	if m := csrfRE.FindSubmatch(body); m != nil {
		tok = string(m[1])
	}
	return resp.StatusCode, string(body), tok
}

func (b *browser) post(path string, form url.Values) (int, string) {
	resp, err := b.c.PostForm(b.base+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// signIn signs in and returns the session's CSRF token.
func (b *browser) signIn(user, password string) string {
	b.t.Helper()
	_, _, tok := b.get("/admin/login")
	code, body := b.post("/admin/login", url.Values{"csrf": {tok}, "user": {user}, "password": {password}})
	if code != http.StatusSeeOther {
		b.t.Fatalf("sign in as %s: %d %s", user, code, body)
	}
	_, _, csrf := b.get("/admin/keys")
	if csrf == "" {
		b.t.Fatalf("no CSRF token on /admin/keys after signing in as %s", user)
	}
	return csrf
}
