package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/web"
)

func fill(pattern string) string {
	p := strings.ReplaceAll(pattern, "{$}", "")
	for strings.Contains(p, "{") {
		i, j := strings.Index(p, "{"), strings.Index(p, "}")
		p = p[:i] + "x" + p[j+1:]
	}
	return p
}

// TestRoutesNeedSession walks every /admin route without a session: a
// page redirects to the sign-in form, a change is 401, the REST API 401.
func TestRoutesNeedSession(t *testing.T) {
	p := newPortal(t)
	b := p.client(t)
	check := func(rt web.Route, rest bool) {
		path := fill(rt.Path)
		req, _ := http.NewRequest(rt.Method, p.http.URL+path, strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		switch {
		case rest || rt.Method != "GET":
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s without a session: %d, want 401", rt.Method, path, resp.StatusCode)
			}
		case resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/admin/login?next="):
			t.Errorf("%s %s without a session: %d to %q, want 303 to the sign-in page", rt.Method, path, resp.StatusCode, loc)
		}
	}
	n := 0
	for _, rt := range web.Routes() {
		if rt.Access == web.Public {
			continue
		}
		check(rt, false)
		n++
	}
	rest := 0
	for _, rt := range p.srv.Routes() {
		// ePortal's REST API under /admin/api: the routes an operator's
		// API key opens, walked from the table the server mounts.
		if rt.Auth == "token" && strings.HasPrefix(rt.Path, "/admin/api/") {
			check(web.Route{Method: rt.Method, Path: rt.Path}, true)
			rest++
		}
	}
	if rest < 10 {
		t.Errorf("only %d REST routes walked", rest)
	}
	check(web.Route{Method: "GET", Path: "/admin/no/such/page"}, false)
	if n < 25 {
		t.Errorf("only %d UI routes walked", n)
	}
}

// TestCSRFAndRoles: a change without the CSRF token is refused; a
// read-only user sees no edit controls and any change is 403.
func TestCSRFAndRoles(t *testing.T) {
	p := newPortal(t)
	alice := p.client(t)
	csrf := alice.signIn("alice", alicePassword)
	if code, _ := alice.post("/admin/keys", url.Values{"key": {"nocsrf"}}); code != http.StatusForbidden {
		t.Errorf("POST without CSRF token: %d, want 403", code)
	}
	if code, _ := alice.post("/admin/keys", url.Values{"key": {"badcsrf"}, "csrf": {csrf + "x"}}); code != http.StatusForbidden {
		t.Errorf("POST with a wrong CSRF token: %d, want 403", code)
	}
	if code, body := alice.post("/admin/keys", url.Values{"key": {"good"}, "limit": {"2"}, "csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("POST with the CSRF token: %d %s, want 303", code, body)
	}

	bob := p.client(t)
	bcsrf := bob.signIn("bob", bobPassword)
	_, keys, _ := bob.get("/admin/keys")
	if !strings.Contains(keys, ">good<") || strings.Contains(keys, "/edit") || strings.Contains(keys, "New key") {
		t.Errorf("read-only keys page shows edit controls or misses the key:\n%s", keys)
	}
	_, feed, _ := bob.get("/admin/feeds/main")
	if strings.Contains(feed, "enable up to this") {
		t.Error("read-only feed page shows patchset actions")
	}
	for _, path := range []string{"/admin/keys", "/admin/keys/good/delete", "/admin/feeds", "/admin/users", "/admin/apikeys", "/admin/servers/delete"} {
		if code, _ := bob.post(path, url.Values{"key": {"forged"}, "name": {"forged"}, "id": {"x"}, "csrf": {bcsrf}}); code != http.StatusForbidden {
			t.Errorf("read-only POST %s: %d, want 403", path, code)
		}
	}
	if code, _, _ := bob.get("/admin/keys/new"); code != http.StatusForbidden {
		t.Errorf("read-only GET /admin/keys/new: %d, want 403", code)
	}
	// Sign out works for both, and ends the session.
	if code, _ := bob.post("/admin/logout", url.Values{"csrf": {bcsrf}}); code != http.StatusSeeOther {
		t.Errorf("sign out: %d", code)
	}
	if code, _, _ := bob.get("/admin/keys"); code != http.StatusSeeOther {
		t.Errorf("after sign out /admin/keys: %d, want 303", code)
	}
}

// TestSessionIdle: a session unused for 30 minutes has ended.
func TestSessionIdle(t *testing.T) {
	p := newPortal(t)
	b := p.client(t)
	b.signIn("alice", alicePassword)
	p.advance(29 * time.Minute)
	if code, _, _ := b.get("/admin/"); code != http.StatusOK {
		t.Fatalf("after 29 idle minutes: %d, want 200", code)
	}
	p.advance(31 * time.Minute)
	if code, _, _ := b.get("/admin/"); code != http.StatusSeeOther {
		t.Errorf("after 31 idle minutes: %d, want 303 to sign in", code)
	}
}

// TestSignInThrottle: after 5 failures a user is locked out for a while
// that grows, on the portal's clock.
func TestSignInThrottle(t *testing.T) {
	p := newPortal(t)
	b := p.client(t)
	try := func(pw string) int {
		_, _, tok := b.get("/admin/login")
		code, _ := b.post("/admin/login", url.Values{"csrf": {tok}, "user": {"alice"}, "password": {pw}})
		return code
	}
	for i := range 5 {
		if code := try("wrong password"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, code)
		}
	}
	if code := try(alicePassword); code != http.StatusTooManyRequests {
		t.Fatalf("right password while locked out: %d, want 429", code)
	}
	p.advance(31 * time.Second)
	if code := try("wrong password"); code != http.StatusUnauthorized {
		t.Fatalf("after the lockout: %d, want 401", code)
	}
	p.advance(31 * time.Second)
	if code := try(alicePassword); code != http.StatusTooManyRequests {
		t.Fatalf("the second lockout is longer: %d, want 429", code)
	}
	p.advance(31 * time.Second)
	if code := try(alicePassword); code != http.StatusSeeOther {
		t.Fatalf("right password after the lockout: %d, want 303", code)
	}
}

var (
	hostCellRE = regexp.MustCompile(`<tr class="srv">(?:.|\n)*?</td><td>([^<]*)</td>`)
	pagerRE    = regexp.MustCompile(`<a href="\?([^"]*)" id="(first|prev|next)">`)
)

// TestServersPager: the servers page walks 120 servers 50 at a time,
// forward with "next page" and back with "previous page", showing each
// server once and the same page again on the way back.
func TestServersPager(t *testing.T) {
	p := newPortal(t)
	ctx := context.Background()
	if err := p.st.AddKey(ctx, &store.Key{Key: "pager", Created: p.now()}); err != nil {
		t.Fatal(err)
	}
	for i := range 120 {
		srv := &store.Server{ID: fmt.Sprintf("srv-%03d", i), Hostname: fmt.Sprintf("h%03d", i), IP: "192.0.2.1",
			Registered: p.now().Add(time.Duration(i) * time.Second)}
		if err := p.st.Register(ctx, "pager", srv); err != nil {
			t.Fatal(err)
		}
	}
	b := p.client(t)
	b.signIn("alice", alicePassword)
	type page struct {
		first, last string
		n           int
		links       map[string]string
	}
	load := func(query string) page {
		t.Helper()
		code, body, _ := b.get("/admin/servers?" + query)
		if code != http.StatusOK {
			t.Fatalf("GET /admin/servers?%s: %d", query, code)
		}
		var hosts []string
		for _, m := range hostCellRE.FindAllStringSubmatch(body, -1) {
			hosts = append(hosts, m[1])
		}
		pg := page{n: len(hosts), links: map[string]string{}}
		if len(hosts) > 0 {
			pg.first, pg.last = hosts[0], hosts[len(hosts)-1]
		}
		for _, m := range pagerRE.FindAllStringSubmatch(body, -1) {
			pg.links[m[2]] = strings.ReplaceAll(m[1], "&amp;", "&")
		}
		return pg
	}
	want := func(what string, got page, first, last string, links ...string) {
		t.Helper()
		var have []string
		for _, l := range []string{"first", "prev", "next"} {
			if _, ok := got.links[l]; ok {
				have = append(have, l)
			}
		}
		if got.first != first || got.last != last || !slices.Equal(have, links) {
			t.Errorf("%s: %s..%s (%d rows) with links %v, want %s..%s with %v", what, got.first, got.last, got.n, have, first, last, links)
		}
	}
	p1 := load("")
	want("page 1", p1, "h000", "h049", "next")
	p2 := load(p1.links["next"])
	want("page 2", p2, "h050", "h099", "first", "prev", "next")
	p3 := load(p2.links["next"])
	want("page 3", p3, "h100", "h119", "first", "prev")
	back2 := load(p3.links["prev"])
	want("back to page 2", back2, "h050", "h099", "first", "prev", "next")
	back1 := load(back2.links["prev"])
	want("back to page 1", back1, "h000", "h049", "next")
	// Sorted by hostname, newest first.
	d1 := load("sort=hostname&desc=1")
	want("hostname descending, page 1", d1, "h119", "h070", "next")
	d2 := load(d1.links["next"])
	want("hostname descending, page 2", d2, "h069", "h020", "first", "prev", "next")
	want("hostname descending, back to page 1", load(d2.links["prev"]), "h119", "h070", "next")
}
