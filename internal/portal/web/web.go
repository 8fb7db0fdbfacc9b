// Package web is eportal's admin web UI under /admin: server-rendered
// pages (html/template, one small stylesheet, no script framework) for
// the servers, keys, feeds, patches, users, API keys and the audit log.
// Operators sign in with a password; a session lives in an HttpOnly,
// SameSite=Strict cookie, every form carries the session's CSRF token,
// read-only users see no edit controls and get 403 on any change, and
// every change is written to the audit log with its before and after.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/store"
)

//go:embed templates/*.html style.css
var files embed.FS

// Defaults for Config.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	DefaultInactiveAge = 48 * time.Hour
	// DefaultHashWait is how long a sign-in waits for memory to hash its
	// password before it is refused with 429.
	DefaultHashWait = 2 * time.Second
	// PageSize is how many servers a page of the servers list shows.
	PageSize = 50
)

// Config is what the UI needs from the portal.
type Config struct {
	Store store.Store
	// Publish verifies a bundle and its signature and stores it, as the
	// publish API does.
	Publish func(ctx context.Context, data, sig []byte, channel, patchset string) (*store.Level, error)
	// ManagePatchsets applies enable, disable, enable-upto or
	// undeploy-downto to a patchset in a feed.
	ManagePatchsets func(ctx context.Context, st store.Store, feed, patchset, action string) ([]string, error)
	// NewKey makes a random activation key.
	NewKey      func() string
	InactiveAge time.Duration // 0: DefaultInactiveAge
	IdleTimeout time.Duration // 0: DefaultIdleTimeout
	MaxAge      time.Duration // a session's absolute lifetime; 0: DefaultMaxAge
	// CheckPassword checks a sign-in's password against the user's
	// stored hash; nil is auth.CheckPassword.
	CheckPassword func(hash, password string) error
	// HashMemory is the memory that concurrent password hashes may take
	// together; 0: auth.DefaultHashMemory.
	HashMemory int64
	// HashWait is how long a sign-in waits for a hash to finish when as
	// many run as HashMemory allows, before it is refused; 0: DefaultHashWait.
	HashWait time.Duration
	Log      *slog.Logger
	Now      func() time.Time
}

// UI serves the admin pages.
type UI struct {
	cfg      Config
	mux      *http.ServeMux
	pages    map[string]*template.Template
	throttle *throttle
	hashes   *auth.Limiter

	statsMu sync.Mutex
	stats   *overview
	statsAt time.Time
}

// Route is one page or action of the UI.
type Route struct {
	Method string
	Path   string // a ServeMux pattern path, with {name} wildcards
	Public bool   // served without a session (the sign-in page)
}

type handler func(w http.ResponseWriter, r *http.Request, c *reqCtx) error

type route struct {
	Route
	h func(u *UI) handler
}

// routes is the UI's route table; Routes exports it for tests.
var routes = []route{
	{Route{"GET", "/admin/login", true}, func(u *UI) handler { return u.loginPage }},
	{Route{"POST", "/admin/login", true}, func(u *UI) handler { return u.login }},
	{Route{"POST", "/admin/logout", false}, func(u *UI) handler { return u.logout }},
	{Route{"GET", "/admin/{$}", false}, func(u *UI) handler { return u.overview }},
	{Route{"GET", "/admin/servers", false}, func(u *UI) handler { return u.servers }},
	{Route{"POST", "/admin/servers/delete", false}, func(u *UI) handler { return u.deleteServers }},
	{Route{"GET", "/admin/servers/{id}", false}, func(u *UI) handler { return u.server }},
	{Route{"GET", "/admin/keys", false}, func(u *UI) handler { return u.keys }},
	{Route{"GET", "/admin/keys/new", false}, func(u *UI) handler { return u.keyForm }},
	{Route{"POST", "/admin/keys", false}, func(u *UI) handler { return u.saveKey }},
	{Route{"GET", "/admin/keys/{key}", false}, func(u *UI) handler { return u.key }},
	{Route{"GET", "/admin/keys/{key}/edit", false}, func(u *UI) handler { return u.keyForm }},
	{Route{"POST", "/admin/keys/{key}", false}, func(u *UI) handler { return u.saveKey }},
	{Route{"GET", "/admin/keys/{key}/delete", false}, func(u *UI) handler { return u.confirmDeleteKey }},
	{Route{"POST", "/admin/keys/{key}/delete", false}, func(u *UI) handler { return u.deleteKey }},
	{Route{"GET", "/admin/feeds", false}, func(u *UI) handler { return u.feeds }},
	{Route{"POST", "/admin/feeds", false}, func(u *UI) handler { return u.addFeed }},
	{Route{"GET", "/admin/feeds/{feed}", false}, func(u *UI) handler { return u.feed }},
	{Route{"POST", "/admin/feeds/{feed}", false}, func(u *UI) handler { return u.editFeed }},
	{Route{"GET", "/admin/feeds/{feed}/delete", false}, func(u *UI) handler { return u.confirmDeleteFeed }},
	{Route{"POST", "/admin/feeds/{feed}/delete", false}, func(u *UI) handler { return u.deleteFeed }},
	{Route{"POST", "/admin/feeds/{feed}/patchsets", false}, func(u *UI) handler { return u.managePatchsets }},
	{Route{"GET", "/admin/patches", false}, func(u *UI) handler { return u.patches }},
	{Route{"POST", "/admin/patches", false}, func(u *UI) handler { return u.upload }},
	{Route{"GET", "/admin/users", false}, func(u *UI) handler { return u.users }},
	{Route{"POST", "/admin/users", false}, func(u *UI) handler { return u.addUser }},
	{Route{"POST", "/admin/users/{name}/delete", false}, func(u *UI) handler { return u.deleteUser }},
	{Route{"GET", "/admin/apikeys", false}, func(u *UI) handler { return u.apiKeys }},
	{Route{"POST", "/admin/apikeys", false}, func(u *UI) handler { return u.addAPIKey }},
	{Route{"POST", "/admin/apikeys/{id}/delete", false}, func(u *UI) handler { return u.deleteAPIKey }},
	{Route{"GET", "/admin/audit", false}, func(u *UI) handler { return u.auditLog }},
}

// Routes lists the UI's pages and actions.
func Routes() []Route {
	out := make([]Route, len(routes))
	for i, r := range routes {
		out[i] = r.Route
	}
	return out
}

// New returns the UI for cfg. Mount it at "GET /admin/" and "POST /admin/".
func New(cfg Config) *UI {
	if cfg.InactiveAge <= 0 {
		cfg.InactiveAge = DefaultInactiveAge
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CheckPassword == nil {
		cfg.CheckPassword = auth.CheckPassword
	}
	if cfg.HashMemory <= 0 {
		cfg.HashMemory = auth.DefaultHashMemory
	}
	if cfg.HashWait <= 0 {
		cfg.HashWait = DefaultHashWait
	}
	u := &UI{cfg: cfg, mux: http.NewServeMux(), pages: parsePages()}
	u.throttle = newThrottle(u.now)
	u.hashes = auth.NewLimiter(cfg.HashMemory)
	for _, rt := range routes {
		u.mux.Handle(rt.Method+" "+rt.Path, u.serve(rt.Route, rt.h(u)))
	}
	u.mux.Handle("/admin/", u.serve(Route{Method: "GET"}, func(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
		return errorf(http.StatusNotFound, "no such page")
	}))
	return u
}

func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

func (u *UI) now() time.Time { return u.cfg.Now().UTC() }

// webError is an error with a status and a message for the operator; the
// wrapped error is for the log only.
type webError struct {
	code       int
	msg        string
	err        error
	retryAfter int // seconds, for a 429
}

func (e *webError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%d %s: %v", e.code, e.msg, e.err)
	}
	return fmt.Sprintf("%d %s", e.code, e.msg)
}

func (e *webError) Unwrap() error { return e.err }

func errorf(code int, format string, args ...any) error {
	return &webError{code: code, msg: fmt.Sprintf(format, args...)}
}

// storeError gives a store error its status.
func storeError(err error) error {
	code := 0
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrExists):
		code = http.StatusConflict
	case errors.Is(err, store.ErrInUse):
		code = http.StatusConflict
	case errors.Is(err, store.ErrInvalidInput):
		code = http.StatusBadRequest
	}
	if code == 0 {
		return err
	}
	return &webError{code: code, msg: err.Error(), err: err}
}

// reqCtx is what a handler knows of the request beyond it.
type reqCtx struct {
	user *store.User // nil on public pages
	sess *store.Session
}

func (c *reqCtx) admin() bool { return c.user != nil && c.user.Role == "admin" }

// serve authenticates, checks the role and the CSRF token of a change,
// runs h, and renders its error: the one place errors become pages.
func (u *UI) serve(rt Route, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		c := &reqCtx{}
		err := u.authorize(w, r, rt, c)
		if err == nil {
			err = h(w, r, c)
		}
		if err == nil || errors.Is(err, errHandled) {
			return
		}
		var we *webError
		if !errors.As(err, &we) {
			we = &webError{code: http.StatusInternalServerError, msg: "internal error", err: err}
		}
		level := slog.LevelInfo
		if we.code >= 500 {
			level = slog.LevelError
		}
		u.cfg.Log.Log(r.Context(), level, "admin request failed", "method", r.Method, "path", r.URL.Path, "status", we.code, "error", we.Error())
		if we.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(we.retryAfter))
		}
		if we.code == http.StatusTooManyRequests || we.code == http.StatusUnauthorized && rt.Public {
			// The sign-in form again, with the reason.
			u.renderLogin(w, r, we.code, we.msg)
			return
		}
		u.render(w, r, c, we.code, "error", "Error", map[string]any{"Code": we.code, "Status": http.StatusText(we.code), "Message": we.msg})
	})
}

// errHandled is a handler's "the response is written" (a redirect).
var errHandled = errors.New("handled")

func redirect(w http.ResponseWriter, r *http.Request, to string) error {
	http.Redirect(w, r, to, http.StatusSeeOther)
	return errHandled
}

// remoteIP is the address the request came from.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// audit records a change made in the UI.
func (u *UI) audit(r *http.Request, c *reqCtx, action, object, detail string, before, after any) {
	e := store.AuditEntry{At: u.now(), Actor: c.user.Name, IP: remoteIP(r), Action: action, Object: object,
		Detail: detail, Before: auditJSON(before), After: auditJSON(after)}
	if err := u.cfg.Store.Audit(r.Context(), e); err != nil {
		u.cfg.Log.Error("audit", "action", action, "error", err)
	}
}

func trimLines(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
