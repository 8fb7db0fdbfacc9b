package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/store"
)

// Cookie names.
const (
	sessionCookie = "kcare_session"
	loginCookie   = "kcare_login" // the sign-in form's CSRF token (double submit)
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/admin/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// tokenMatches reports whether the form's token equals want, in constant time.
func tokenMatches(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// authorize fills c from the session cookie. Without a valid session a
// page redirects to the sign-in form and a change is 401; a change also
// needs the admin role (else 403) and the session's CSRF token (else 403).
func (u *UI) authorize(w http.ResponseWriter, r *http.Request, rt Route, c *reqCtx) error {
	if r.Method == http.MethodPost {
		max := int64(1 << 20)
		if rt.Path == "/admin/patches" {
			max = bundle.MaxBundleSize + bundle.MaxSignatureSize + 1<<20
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		var err error
		if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
			err = r.ParseMultipartForm(8 << 20)
		} else {
			err = r.ParseForm()
		}
		if err != nil {
			return &webError{code: http.StatusBadRequest, msg: "bad form", err: err}
		}
	}
	if rt.Public {
		return nil
	}
	sess, user, err := u.session(r)
	if err != nil {
		return err
	}
	if sess == nil {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return redirect(w, r, "/admin/login?next="+url.QueryEscape(r.URL.RequestURI()))
		}
		return errorf(http.StatusUnauthorized, "sign in first")
	}
	c.sess, c.user = sess, user
	if r.Method != http.MethodPost {
		return nil
	}
	if !tokenMatches(r.PostFormValue("csrf"), sess.CSRF) {
		return errorf(http.StatusForbidden, "missing or wrong CSRF token; reload the page and try again")
	}
	if rt.Path != "/admin/logout" && !c.admin() {
		return errorf(http.StatusForbidden, "read-only users cannot change anything")
	}
	return nil
}

// session returns the request's live session and its user, or nils.
func (u *UI) session(r *http.Request) (*store.Session, *store.User, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil, nil
	}
	hash := auth.HashSecret(ck.Value)
	sess, err := u.cfg.Store.Session(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	now := u.now()
	if now.Sub(sess.LastSeen) > u.cfg.IdleTimeout || now.Sub(sess.Created) > u.cfg.MaxAge {
		u.cfg.Store.DeleteSession(r.Context(), hash)
		return nil, nil, nil
	}
	user, err := u.cfg.Store.User(r.Context(), sess.User)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	// Touch at most once a minute: a page view is not a write.
	if now.Sub(sess.LastSeen) > time.Minute {
		if err := u.cfg.Store.TouchSession(r.Context(), hash, now); err != nil {
			return nil, nil, err
		}
	}
	return sess, user, nil
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	if sess, _, err := u.session(r); err == nil && sess != nil {
		return redirect(w, r, "/admin/")
	}
	u.renderLogin(w, r, http.StatusOK, "")
	return nil
}

func (u *UI) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	tok := randomHex(16)
	setCookie(w, r, loginCookie, tok, 3600)
	next := r.FormValue("next")
	u.render(w, r, &reqCtx{}, code, "login", "Sign in", map[string]any{"Token": tok, "Error": msg, "Next": next})
}

func (u *UI) login(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	ck, err := r.Cookie(loginCookie)
	if err != nil || !tokenMatches(r.PostFormValue("csrf"), ck.Value) {
		return errorf(http.StatusForbidden, "missing or wrong CSRF token; reload the sign-in page")
	}
	name, password, ip := r.PostFormValue("user"), r.PostFormValue("password"), remoteIP(r)
	if wait := u.throttle.wait(name, ip); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		return errorf(http.StatusTooManyRequests, "too many failed sign-ins; try again in %d s", secs)
	}
	user, err := u.cfg.Store.User(r.Context(), name)
	if err == nil {
		err = auth.CheckPassword(user.PasswordHash, password)
	} else if errors.Is(err, store.ErrNotFound) {
		// Spend the same time as a wrong password.
		auth.CheckPassword(dummyHash, password)
	}
	if err != nil {
		u.throttle.fail(name, ip)
		u.cfg.Log.Info("failed sign-in", "user", name, "ip", ip)
		return errorf(http.StatusUnauthorized, "wrong user name or password")
	}
	u.throttle.reset(name, ip)
	id := randomHex(32)
	sess := &store.Session{IDHash: auth.HashSecret(id), User: user.Name, Created: u.now(), CSRF: randomHex(32), IP: ip}
	if err := u.cfg.Store.AddSession(r.Context(), sess); err != nil {
		return err
	}
	u.cfg.Store.DeleteSessions(r.Context(), u.now().Add(-u.cfg.MaxAge))
	setCookie(w, r, sessionCookie, id, 0)
	setCookie(w, r, loginCookie, "", -1)
	next := r.PostFormValue("next")
	if !strings.HasPrefix(next, "/admin/") || strings.HasPrefix(next, "/admin/login") || strings.Contains(next, "//") {
		next = "/admin/"
	}
	return redirect(w, r, next)
}

var dummyHash, _ = auth.HashPassword("no such user, a dummy password")

func (u *UI) logout(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		u.cfg.Store.DeleteSession(r.Context(), auth.HashSecret(ck.Value))
	}
	setCookie(w, r, sessionCookie, "", -1)
	return redirect(w, r, "/admin/login")
}

// Failed sign-ins are slowed down per user name and per address: after
// freeFailures in a row, each further attempt waits a lockout that
// doubles from lockoutBase up to lockoutMax.
const (
	freeFailures = 5
	lockoutBase  = 30 * time.Second
	lockoutMax   = 15 * time.Minute
)

type failState struct {
	n     int
	until time.Time
	last  time.Time
}

type throttle struct {
	mu    sync.Mutex
	now   func() time.Time
	fails map[string]*failState
}

func newThrottle(now func() time.Time) *throttle {
	return &throttle{now: now, fails: map[string]*failState{}}
}

func throttleKeys(user, ip string) []string { return []string{"user:" + user, "ip:" + ip} }

// wait returns how long a sign-in as user from ip must still wait.
func (t *throttle) wait(user, ip string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var d time.Duration
	now := t.now()
	for _, k := range throttleKeys(user, ip) {
		if f := t.fails[k]; f != nil && f.until.After(now) {
			d = max(d, f.until.Sub(now))
		}
	}
	return d
}

func (t *throttle) fail(user, ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.fails) > 100_000 {
		for k, f := range t.fails {
			if now.Sub(f.last) > time.Hour {
				delete(t.fails, k)
			}
		}
	}
	for _, k := range throttleKeys(user, ip) {
		f := t.fails[k]
		if f == nil || now.Sub(f.last) > time.Hour {
			f = &failState{}
			t.fails[k] = f
		}
		f.n++
		f.last = now
		if f.n >= freeFailures {
			d := lockoutBase << min(f.n-freeFailures, 10)
			f.until = now.Add(min(d, lockoutMax))
		}
	}
}

func (t *throttle) reset(user, ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range throttleKeys(user, ip) {
		delete(t.fails, k)
	}
}
