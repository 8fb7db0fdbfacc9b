package web_test

import (
	"net/http"
	"testing"

	"github.com/kcare/kcare/internal/portal/web"
)

// TestSignInNext: after signing in the browser goes to next only when it
// is a clean path under /admin/ on this portal; any other goes to /admin/.
func TestSignInNext(t *testing.T) {
	u := newTestUI(t, web.Config{})
	for _, tc := range []struct{ next, want string }{
		{"", "/admin/"},
		{"/admin/servers", "/admin/servers"},
		{"/admin/servers?state=inactive&sort=hostname", "/admin/servers?state=inactive&sort=hostname"},
		{"/admin/keys/acme", "/admin/keys/acme"},
		{"/admin/keys/a%20b", "/admin/keys/a%20b"},
		{"/admin/feeds/main/", "/admin/feeds/main/"},
		{"/admin/servers?next=https://evil.example/", "/admin/servers?next=https://evil.example/"},
		{`/admin/../../\evil.example/`, "/admin/"},
		{"//evil.example/", "/admin/"},
		{"///evil.example/", "/admin/"},
		{`/\evil.example/`, "/admin/"},
		{`\\evil.example/`, "/admin/"},
		{"/admin//evil.example/", "/admin/"},
		{`/admin/\evil.example/`, "/admin/"},
		{`/admin/\/evil.example/`, "/admin/"},
		{"https://evil.example/admin/", "/admin/"},
		{"http:/admin/servers", "/admin/"},
		{"//evil.example/admin/", "/admin/"},
		{"javascript:alert(1)", "/admin/"},
		{"/admin/%2e%2e/%2e%2e/evil.example/", "/admin/"},
		{"/admin/..%2f..%2f%5cevil.example/", "/admin/"},
		{"/admin/%2F%2Fevil.example/", "/admin/"},
		{"/admin/%5Cevil.example/", "/admin/"},
		{"%2F%2Fevil.example/", "/admin/"},
		{"/%2F/evil.example/", "/admin/"},
		{"/admin/\t/evil.example/", "/admin/"},
		{"/\t/evil.example/", "/admin/"},
		{"/admin/\r\nLocation: https://evil.example/", "/admin/"},
		{"/admin/./servers", "/admin/"},
		{"/admin/servers/..", "/admin/"},
		{"/admin/servers#x", "/admin/"},
		{" /admin/servers", "/admin/"},
		{"/admin", "/admin/"},
		{"/adminx/", "/admin/"},
		{"/servers", "/admin/"},
		{"/admin/login", "/admin/"},
		{"/admin/login?next=//evil.example/", "/admin/"},
	} {
		resp := u.signIn("127.0.0.1", "alice", alicePassword, tc.next)
		if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || got != tc.want {
			t.Errorf("sign in with next=%q: %d to %q, want 303 to %q", tc.next, resp.StatusCode, got, tc.want)
		}
	}
}
