package web_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/portal/web"
)

var publisher = bundletest.Signer("kcare web test publisher")

// testUI is the UI over a SQLite store with an admin (alice) and a
// read-only user (bob), on a clock the test moves. Requests go straight
// to its handler, each from the address the test gives.
type testUI struct {
	t   testing.TB
	st  store.Store
	ui  *web.UI
	mu  sync.Mutex
	now time.Time
}

const (
	alicePassword = "alice's long password"
	bobPassword   = "bob's long password"
)

// plainHash and plainCheck stand in for Argon2 where a test does not
// measure it: the stored "hash" is the password with a prefix.
func plainHash(password string) string { return "plain$" + password }

func plainCheck(hash, password string) error {
	if hash != plainHash(password) {
		return auth.ErrMismatch
	}
	return nil
}

// newTestUI returns a UI for cfg, filling in the store, the clock and
// (unless cfg has one) plainCheck. The core trusts the test publisher;
// each of opts may change its config.
func newTestUI(t testing.TB, cfg web.Config, opts ...func(*core.Config)) *testUI {
	t.Helper()
	st := storetest.Open(t, "sqlite")
	addTestUsers(t, st)
	return newTestUIOn(t, st, cfg, opts...)
}

// addTestUsers adds alice (admin) and bob (read-only) to st.
func addTestUsers(t testing.TB, st store.Store) {
	t.Helper()
	for _, usr := range []struct{ name, pw, role string }{{"alice", alicePassword, "admin"}, {"bob", bobPassword, "readonly"}} {
		if err := st.AddUser(context.Background(), &store.User{Name: usr.name, PasswordHash: plainHash(usr.pw), Role: apitype.Role(usr.role)}); err != nil {
			t.Fatal(err)
		}
	}
}

// newTestUIOn is newTestUI on st, whose users it does not add.
func newTestUIOn(t testing.TB, st store.Store, cfg web.Config, opts ...func(*core.Config)) *testUI {
	t.Helper()
	u := &testUI{t: t, st: st, now: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)}
	cc := core.Config{Store: u.st, Now: u.clock, Publishers: bundletest.Keyring(t, publisher), PublishersFrom: "/srv/eportal/publishers"}
	for _, o := range opts {
		o(&cc)
	}
	cfg.Core = core.New(cc)
	if cfg.CheckPassword == nil {
		cfg.CheckPassword = plainCheck
	}
	u.ui = web.New(cfg)
	return u
}

func (u *testUI) clock() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.now
}

func (u *testUI) advance(d time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.now = u.now.Add(d)
}

// do serves req as coming from ip.
func (u *testUI) do(req *http.Request, ip string) *http.Response {
	req.RemoteAddr = net.JoinHostPort(ip, "40000")
	rec := httptest.NewRecorder()
	u.ui.ServeHTTP(rec, req)
	return rec.Result()
}

// signIn posts the sign-in form from ip, with the sign-in page's CSRF
// cookie and token, and next when it is not "".
func (u *testUI) signIn(ip, user, password, next string) *http.Response {
	form := url.Values{"csrf": {"login-token"}, "user": {user}, "password": {password}}
	if next != "" {
		form.Set("next", next)
	}
	req := httptest.NewRequest("POST", "/admin/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "kcare_login", Value: "login-token"})
	return u.do(req, ip)
}

// session signs user in from 127.0.0.1 and returns its cookie and CSRF
// token.
func (u *testUI) session(user, password string) (*http.Cookie, string) {
	u.t.Helper()
	resp := u.signIn("127.0.0.1", user, password, "")
	if resp.StatusCode != http.StatusSeeOther {
		u.t.Fatalf("sign in as %s: %d %s", user, resp.StatusCode, body(resp))
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "kcare_session" {
			ck = c
		}
	}
	if ck == nil {
		u.t.Fatalf("sign in as %s: no session cookie", user)
	}
	sess, err := u.st.Session(context.Background(), auth.HashSecret(ck.Value))
	if err != nil {
		u.t.Fatal(err)
	}
	return ck, sess.CSRF
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
