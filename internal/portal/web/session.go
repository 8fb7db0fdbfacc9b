package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/httpbound"
	"github.com/kcare/kcare/internal/portal/httperr"
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

// authorize checks the request against its route, in this order,
// reading no body before the last step: the session (without one a page
// redirects to the sign-in form and a change is 401), the role (403),
// then the body up to the route's limit (413), and for a change the
// session's CSRF token in it (403). The sign-in form is public: its body
// is read up to its limit and it checks its own token.
func (u *UI) authorize(w http.ResponseWriter, r *http.Request, rt Route, c *reqCtx) error {
	r.Body = http.MaxBytesReader(w, r.Body, rt.MaxBody)
	if rt.Access != Public {
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
		if rt.Access == Admin && !c.admin() {
			return errorf(http.StatusForbidden, "read-only users cannot change anything")
		}
	}
	if r.Method != http.MethodPost {
		return nil
	}
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if rt.Upload {
		if mediaType != "multipart/form-data" {
			return errorf(http.StatusUnsupportedMediaType, "the upload must be a multipart/form-data form")
		}
		// Authenticated as an admin: the upload may take longer than the
		// server's ReadTimeout.
		httpbound.ExtendForUpload(w, time.Now(), rt.MaxBody)
		parts, err := readUpload(r.Body, params["boundary"], c.sess.CSRF)
		switch {
		case errors.Is(err, ErrUploadCSRF):
			return httperr.Wrap(http.StatusForbidden, "missing or wrong CSRF token; reload the page and try again", err)
		case errors.Is(err, ErrUploadTooLarge) || isTooLarge(err):
			return httperr.Wrap(http.StatusRequestEntityTooLarge, "the upload is too large", err)
		case err != nil:
			return httperr.Wrap(http.StatusBadRequest, "bad upload form", err)
		}
		c.upload = parts
		return nil
	}
	if mediaType != "application/x-www-form-urlencoded" {
		return errorf(http.StatusUnsupportedMediaType, "the form must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		if isTooLarge(err) {
			return httperr.Wrap(http.StatusRequestEntityTooLarge, "the form is too large", err)
		}
		return httperr.Wrap(http.StatusBadRequest, "bad form", err)
	}
	if rt.Access != Public && !tokenMatches(r.PostForm.Get("csrf"), c.sess.CSRF) {
		return errorf(http.StatusForbidden, "missing or wrong CSRF token; reload the page and try again")
	}
	return nil
}

// isTooLarge reports whether err is a body over its route's limit.
func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// session returns the request's live session and its user, or nils.
func (u *UI) session(r *http.Request) (*store.Session, *store.User, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil, nil
	}
	hash := auth.HashSecret(ck.Value)
	sess, err := u.core.Session(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	now := u.now()
	if now.Sub(sess.LastSeen) > u.cfg.IdleTimeout || now.Sub(sess.Created) > u.cfg.MaxAge {
		u.core.EndSession(r.Context(), hash)
		return nil, nil, nil
	}
	user, err := u.core.User(r.Context(), sess.User)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	// Touch at most once a minute: a page view is not a write.
	if now.Sub(sess.LastSeen) > time.Minute {
		if err := u.core.TouchSession(r.Context(), hash); err != nil {
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
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostForm.Get("next")
	}
	u.render(w, r, &reqCtx{}, code, "login", "Sign in", map[string]any{"Token": tok, "Error": msg, "Next": next})
}

func (u *UI) login(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	ck, err := r.Cookie(loginCookie)
	if err != nil || !tokenMatches(r.PostFormValue("csrf"), ck.Value) {
		return errorf(http.StatusForbidden, "missing or wrong CSRF token; reload the sign-in page")
	}
	ip := httperr.RemoteIP(r)
	user, err := u.CheckPassword(r.Context(), r.PostFormValue("user"), r.PostFormValue("password"), ip)
	if err != nil {
		return err
	}
	id := randomHex(32)
	sess := &store.Session{IDHash: auth.HashSecret(id), User: user.Name, Created: u.now(), CSRF: randomHex(32), IP: ip}
	if err := u.core.AddSession(r.Context(), sess); err != nil {
		return err
	}
	u.core.EndSessionsIdle(r.Context(), u.cfg.MaxAge)
	setCookie(w, r, sessionCookie, id, 0)
	setCookie(w, r, loginCookie, "", -1)
	return redirect(w, r, safeNext(r.PostForm.Get("next"), "/admin/"))
}

// safeNext returns next if it is a clean path under /admin/ on this
// portal (with a query, if any), else fallback. Browsers read a
// backslash as a slash, drop tabs and newlines, resolve dot segments
// and decode %2e, so anything that could lead elsewhere is refused:
// a scheme or host, any backslash, control character or fragment, an
// empty or dot segment before or after decoding, and the sign-in page.
func safeNext(next, fallback string) string {
	for _, c := range []byte(next) {
		if c < 0x21 || c == 0x7f || c == '\\' || c == '#' {
			return fallback
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Opaque != "" || u.User != nil || u.Host != "" {
		return fallback
	}
	for _, p := range []string{u.Path, u.EscapedPath()} {
		if !strings.HasPrefix(p, "/admin/") || strings.ContainsAny(p, "\\") || strings.Contains(p, "//") ||
			path.Clean(p) != strings.TrimSuffix(p, "/") {
			return fallback
		}
	}
	if u.Path == "/admin/login" || strings.HasPrefix(u.Path, "/admin/login/") {
		return fallback
	}
	return u.RequestURI()
}

// tooMany is a 429 whose Retry-After says wait, in whole seconds.
// CheckPassword returns the operator name signs in as with password,
// from ip, under the sign-in's throttle and hash memory budget: the one
// check of a password, for the sign-in page and the REST API's HTTP
// basic auth alike. A refusal is an *httperr.Error: 401 for a wrong name
// or password, 429 for a throttled source or a busy portal.
func (u *UI) CheckPassword(ctx context.Context, name, password, ip string) (*store.User, error) {
	src := throttleSource(ip)
	// The throttle's slot first, then memory for the hash: a guess that
	// would be refused costs no hash.
	wait, busy, err := u.throttle.begin(ctx, name, src)
	if err != nil {
		return nil, err
	}
	if wait > 0 {
		if busy {
			return nil, tooMany(wait, "another sign-in from your address is being checked")
		}
		return nil, tooMany(wait, "too many failed sign-ins")
	}
	defer u.throttle.end(src)
	release, err := u.hashes.Acquire(ctx, u.cfg.HashWait)
	if err != nil {
		return nil, tooMany(time.Second, "the portal is busy checking other sign-ins")
	}
	user, err := u.core.User(ctx, name)
	if err == nil {
		err = u.cfg.CheckPassword(user.PasswordHash, password)
	} else if errors.Is(err, store.ErrNotFound) {
		// Spend the same time as a wrong password.
		u.cfg.CheckPassword(auth.DummyHash, password)
	}
	release()
	if err != nil {
		if err := u.throttle.fail(ctx, name, src); err != nil {
			return nil, err
		}
		u.cfg.Log.Info("failed sign-in", "user", name, "ip", ip)
		return nil, errorf(http.StatusUnauthorized, "wrong user name or password")
	}
	if err := u.throttle.reset(ctx, name, src); err != nil {
		return nil, err
	}
	return user, nil
}

func tooMany(wait time.Duration, reason string) error { return httperr.TooMany(wait, reason) }

func (u *UI) logout(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		u.core.EndSession(r.Context(), auth.HashSecret(ck.Value))
	}
	setCookie(w, r, sessionCookie, "", -1)
	return redirect(w, r, "/admin/login")
}

// Failed sign-ins lock out the pair of user name and source address
// that failed: after pairFreeFailures in a row, each further attempt
// waits a lockout that doubles from lockoutBase up to lockoutMax. So that
// nobody can lock an operator out from elsewhere, other addresses are not
// affected; an address that fails sourceFreeFailures times, for any
// users, is locked out as a whole in the same way. Only one sign-in from
// an address is checked at a time, so parallel guesses count one by one.
const (
	pairFreeFailures   = 5
	sourceFreeFailures = 20
	lockoutBase        = 30 * time.Second
	lockoutMax         = 15 * time.Minute
	// busyRetry is the Retry-After of a sign-in refused because another
	// from its address is being checked.
	busyRetry = time.Second
	// maxFailStates bounds the failures remembered; beyond it, those
	// older than failMemory are forgotten.
	maxFailStates = 100_000
	failMemory    = time.Hour
)

// throttleSource is the source the throttle counts a sign-in from ip
// against: the address, or for IPv6 its /64, the least one host gets.
func throttleSource(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

type failState struct {
	n     int
	until time.Time
	last  time.Time
}

// failKey names a pair (user, source) or a source alone, hashed so a
// long user name costs no memory.
type failKey [sha256.Size]byte

func pairKey(user, src string) failKey {
	return sha256.Sum256([]byte("pair\x00" + src + "\x00" + user))
}

func sourceKey(src string) failKey { return sha256.Sum256([]byte("source\x00" + src)) }

func freeFailures(k, source failKey) int {
	if k == source {
		return sourceFreeFailures
	}
	return pairFreeFailures
}

// throttle counts failed sign-ins: in memory, or, for replicas of a
// portal on one database, in the database (shared), so that guesses spread
// over the replicas are counted together. The one sign-in at a time from a
// source is each replica's own.
type throttle struct {
	mu     sync.Mutex
	now    func() time.Time
	fails  map[failKey]*failState // with no shared store
	shared sharedFailures
	busy   map[string]bool // sources with a sign-in being checked
}

// sharedFailures is where replicas count failed sign-ins: the core.
type sharedFailures interface {
	SignInFailures(ctx context.Context, keys ...[]byte) ([]store.SignInFailure, error)
	CountSignInFailure(ctx context.Context, count func(f *store.SignInFailure), keys ...[]byte) error
	ForgetSignInFailures(ctx context.Context, key []byte, before time.Time) error
}

func newThrottle(now func() time.Time, shared sharedFailures) *throttle {
	return &throttle{now: now, fails: map[failKey]*failState{}, busy: map[string]bool{}, shared: shared}
}

// begin starts a sign-in as user from src. It returns how long the caller
// must wait instead, and whether that is because another sign-in from src
// is being checked; else the caller must call end when done.
func (t *throttle) begin(ctx context.Context, user, src string) (wait time.Duration, busy bool, err error) {
	now := t.now()
	keys := []failKey{pairKey(user, src), sourceKey(src)}
	if t.shared != nil {
		fs, err := t.shared.SignInFailures(ctx, keys[0][:], keys[1][:])
		if err != nil {
			return 0, false, err
		}
		for _, f := range fs {
			if f.Until.After(now) {
				wait = max(wait, f.Until.Sub(now))
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.shared == nil {
		for _, k := range keys {
			if f := t.fails[k]; f != nil && f.until.After(now) {
				wait = max(wait, f.until.Sub(now))
			}
		}
	}
	if wait > 0 {
		return wait, false, nil
	}
	if t.busy[src] {
		return busyRetry, true, nil
	}
	t.busy[src] = true
	return 0, false, nil
}

// end finishes the sign-in from src that begin started.
func (t *throttle) end(src string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.busy, src)
}

// count adds a failure at now to f, for key k of a failure from source.
func count(f *failState, k, source failKey, now time.Time) {
	if now.Sub(f.last) > failMemory {
		*f = failState{}
	}
	f.n++
	f.last = now
	if free := freeFailures(k, source); f.n >= free {
		d := lockoutBase << min(f.n-free, 10)
		f.until = now.Add(min(d, lockoutMax))
	}
}

// fail counts a failed sign-in as user from src.
func (t *throttle) fail(ctx context.Context, user, src string) error {
	now := t.now()
	source, pair := sourceKey(src), pairKey(user, src)
	if t.shared != nil {
		return t.shared.CountSignInFailure(ctx, func(sf *store.SignInFailure) {
			k := source
			if bytes.Equal(sf.Key, pair[:]) {
				k = pair
			}
			f := failState{n: sf.N, until: sf.Until, last: sf.Last}
			count(&f, k, source, now)
			sf.N, sf.Until, sf.Last = f.n, f.until, f.last
		}, pair[:], source[:])
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.fails) > maxFailStates {
		for k, f := range t.fails {
			if now.Sub(f.last) > failMemory {
				delete(t.fails, k)
			}
		}
	}
	for _, k := range []failKey{pair, source} {
		f := t.fails[k]
		if f == nil {
			f = &failState{}
			t.fails[k] = f
		}
		count(f, k, source, now)
	}
	return nil
}

// reset forgets the failures of user from src after a sign-in succeeds.
// The address's own count stays: signing in to one account must not
// clear its guesses at others.
func (t *throttle) reset(ctx context.Context, user, src string) error {
	pair := pairKey(user, src)
	if t.shared != nil {
		return t.shared.ForgetSignInFailures(ctx, pair[:], t.now().Add(-failMemory))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fails, pair)
	return nil
}
