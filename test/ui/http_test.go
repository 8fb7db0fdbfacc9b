package ui

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/web"
)

// restRoutes are ePortal's REST API routes that need an API key.
// (POST /admin/api/register is the agent's registration and
// /admin/api/kcare/nagios/{key} is keyed by the activation key, as in
// KernelCare: neither is an operator's page.)
var restRoutes = []web.Route{
	{Method: "GET", Path: "/admin/api/servers"},
	{Method: "GET", Path: "/admin/api/keys/"},
	{Method: "POST", Path: "/admin/api/keys/"},
	{Method: "DELETE", Path: "/admin/api/keys/{key}"},
	{Method: "GET", Path: "/admin/api/feeds/"},
	{Method: "POST", Path: "/admin/api/feeds/"},
	{Method: "GET", Path: "/admin/api/patchsets/"},
	{Method: "POST", Path: "/admin/api/patchsets/manage"},
	{Method: "GET", Path: "/admin/api/kcare/patchset/{key}"},
}

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
	for _, rt := range restRoutes {
		check(rt, true)
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
