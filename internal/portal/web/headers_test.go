package web_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/portal/web"
)

// securityHeaders are the headers every UI response carries.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"Referrer-Policy":         "same-origin",
	"X-Content-Type-Options":  "nosniff",
	"X-Frame-Options":         "DENY",
}

func checkHeaders(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	for name, want := range securityHeaders {
		if got := resp.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s: %q, want %q", what, name, got, want)
		}
	}
}

// TestSecurityHeaders walks every route, signed in and not, and the
// answers in between (a redirect, 401, 403, 404, 413, 429): each carries
// the same security headers.
func TestSecurityHeaders(t *testing.T) {
	u := newTestUI(t, web.Config{})
	alice, csrf := u.session("alice", alicePassword)
	bob, _ := u.session("bob", bobPassword)
	for _, rt := range web.Routes() {
		for _, who := range []struct {
			name string
			ck   *http.Cookie
		}{{"nobody", nil}, {"bob", bob}, {"alice", alice}} {
			if rt.Path == "/admin/logout" && who.name != "nobody" {
				continue // would end the session
			}
			req, _ := routeRequest(rt, csrf, min(rt.MaxBody, 64))
			if who.ck != nil {
				req.AddCookie(who.ck)
			}
			resp := u.do(req, "127.0.0.1")
			checkHeaders(t, fmt.Sprintf("%s %s as %s (%d)", rt.Method, rt.Path, who.name, resp.StatusCode), resp)
		}
	}
	req := httptest.NewRequest("GET", "/admin/no/such/page", nil)
	req.AddCookie(alice)
	checkHeaders(t, "a page that does not exist", u.do(req, "127.0.0.1"))
	req, _ = routeRequest(web.Route{Method: "POST", Path: "/admin/keys"}, csrf, 2<<20)
	req.AddCookie(alice)
	checkHeaders(t, "a form too large", u.do(req, "127.0.0.1"))
	for range 5 {
		u.signIn("127.0.0.2", "alice", "a wrong guess", "")
	}
	resp := u.signIn("127.0.0.2", "alice", "a wrong guess", "")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("sixth failure: %d, want 429", resp.StatusCode)
	}
	checkHeaders(t, "a sign-in locked out", resp)
}

// inlineRE finds what the Content-Security-Policy blocks in a page:
// scripts, inline styles and event handlers.
var inlineRE = regexp.MustCompile(`(?i)<script|<style|\sstyle=|\son[a-z]+=|javascript:`)

// TestPagesNeedNoInline renders every page an admin and a read-only user
// can open: none has a script, an inline style or an event handler, so
// the policy blocks nothing the UI needs; the stylesheet they link is
// served.
func TestPagesNeedNoInline(t *testing.T) {
	u := newTestUI(t, web.Config{})
	alice, csrf := u.session("alice", alicePassword)
	bob, _ := u.session("bob", bobPassword)
	// Something on the pages of a key and a feed.
	req, _ := routeRequest(web.Route{Method: "POST", Path: "/admin/keys"}, csrf, 0)
	req.Body = &countingBody{r: strings.NewReader("csrf=" + csrf + "&key=acme&limit=2&note=web")}
	req.AddCookie(alice)
	if resp := u.do(req, "127.0.0.1"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("add key: %d %s", resp.StatusCode, body(resp))
	}
	links := map[string]bool{}
	linkRE := regexp.MustCompile(`<link rel="stylesheet" href="([^"]+)">`)
	for _, rt := range web.Routes() {
		if rt.Method != "GET" {
			continue
		}
		path := strings.NewReplacer("{$}", "", "{key}", "acme", "{feed}", "main", "{id}", "x").Replace(rt.Path)
		for _, who := range []struct {
			name string
			ck   *http.Cookie
		}{{"nobody", nil}, {"bob", bob}, {"alice", alice}} {
			req := httptest.NewRequest("GET", path, nil)
			if who.ck != nil {
				req.AddCookie(who.ck)
			}
			resp := u.do(req, "127.0.0.1")
			if resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
				continue
			}
			page := body(resp)
			if m := inlineRE.FindString(page); m != "" {
				t.Errorf("GET %s as %s (%d) has %q, which the policy blocks", path, who.name, resp.StatusCode, m)
			}
			for _, m := range linkRE.FindAllStringSubmatch(page, -1) {
				links[m[1]] = true
			}
		}
	}
	if len(links) != 1 {
		t.Fatalf("pages link stylesheets %v, want one", links)
	}
	for link := range links {
		resp := u.do(httptest.NewRequest("GET", link, nil), "127.0.0.2")
		if b := body(resp); resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/css; charset=utf-8" || !strings.Contains(b, "box-sizing") {
			t.Errorf("GET %s: %d %q, want the stylesheet", link, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		checkHeaders(t, "the stylesheet", resp)
	}
}
