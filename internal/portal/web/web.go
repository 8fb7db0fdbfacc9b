// Package web is eportal's admin web UI under /admin: server-rendered
// pages (html/template, one small stylesheet, no script framework) for
// the servers, keys, feeds, patches, users, API keys and the audit log.
// Operators sign in with a password; a session lives in an HttpOnly,
// SameSite=Strict cookie, every form carries the session's CSRF token,
// read-only users see no edit controls and get 403 on any change, and
// every change is written to the audit log with its before and after.
// The route table says who may use each route and how large its body may
// be; no body is read before the session and the role are checked.
package web

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/httperr"
	"github.com/kcare/kcare/internal/portal/store"
)

//go:embed templates/*.html style.css
var files embed.FS

// Defaults for Config.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	// DefaultHashWait is how long a sign-in waits for memory to hash its
	// password before it is refused with 429.
	DefaultHashWait = 2 * time.Second
	// PageSize is how many servers a page of the servers list shows.
	PageSize = 50
)

// Config is what the UI needs beside the portal's core.
type Config struct {
	Core        *core.Core
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
}

// UI serves the admin pages.
type UI struct {
	cfg      Config
	core     *core.Core
	mux      *http.ServeMux
	pages    map[string]*template.Template
	throttle *throttle
	hashes   *auth.Limiter

	statsMu       sync.Mutex
	stats         *overview     // the last counts; nil before the first
	statsErr      error         // the last count's error
	counting      chan struct{} // closed when the count under way ends; nil when none is
	countingSince time.Time
}

// Access is who may use a route.
type Access int

const (
	Public Access = iota // anyone, signed in or not
	Reader               // any signed-in user
	Admin                // a signed-in admin
)

func (a Access) String() string {
	switch a {
	case Public:
		return "public"
	case Reader:
		return "reader"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("Access(%d)", int(a))
}

// Route is one page or action of the UI: who may use it, and for a POST
// the most its body may hold. A body is read only after the session and
// the role have been checked.
type Route struct {
	Method  string
	Path    string // a ServeMux pattern path, with {name} wildcards
	Access  Access
	Upload  bool  // the body is the patch upload (multipart/form-data), not a URL-encoded form
	MaxBody int64 // 0 for a GET: its body is never read
}

// Body limits of the forms.
const (
	buttonForm = 4 << 10  // a button: the CSRF token and a name or two
	loginForm  = 8 << 10  // the sign-in form
	editForm   = 16 << 10 // a form of a few short fields
	listForm   = 1 << 20  // a key's IP ranges; the servers selected for deletion
)

type handler func(w http.ResponseWriter, r *http.Request, c *reqCtx) error

type route struct {
	Route
	h func(u *UI, w http.ResponseWriter, r *http.Request, c *reqCtx) error
}

func get(path string, a Access, h func(*UI, http.ResponseWriter, *http.Request, *reqCtx) error) route {
	return route{Route{Method: "GET", Path: path, Access: a}, h}
}

func post(path string, a Access, maxBody int64, h func(*UI, http.ResponseWriter, *http.Request, *reqCtx) error) route {
	return route{Route{Method: "POST", Path: path, Access: a, MaxBody: maxBody}, h}
}

// routes is the UI's route table; Routes exports it for tests.
var routes = []route{
	get("/admin/login", Public, (*UI).loginPage),
	get("/admin/style.css", Public, (*UI).stylesheet),
	post("/admin/login", Public, loginForm, (*UI).login),
	post("/admin/logout", Reader, buttonForm, (*UI).logout),
	get("/admin/{$}", Reader, (*UI).overview),
	get("/admin/servers", Reader, (*UI).servers),
	post("/admin/servers/delete", Admin, listForm, (*UI).deleteServers),
	get("/admin/servers/{id}", Reader, (*UI).server),
	get("/admin/keys", Reader, (*UI).keys),
	get("/admin/keys/new", Admin, (*UI).keyForm),
	post("/admin/keys", Admin, listForm, (*UI).saveKey),
	get("/admin/keys/{key}", Reader, (*UI).key),
	get("/admin/keys/{key}/edit", Admin, (*UI).keyForm),
	post("/admin/keys/{key}", Admin, listForm, (*UI).saveKey),
	get("/admin/keys/{key}/delete", Admin, (*UI).confirmDeleteKey),
	post("/admin/keys/{key}/delete", Admin, buttonForm, (*UI).deleteKey),
	get("/admin/feeds", Reader, (*UI).feeds),
	post("/admin/feeds", Admin, editForm, (*UI).addFeed),
	get("/admin/feeds/{feed}", Reader, (*UI).feed),
	post("/admin/feeds/{feed}", Admin, editForm, (*UI).editFeed),
	get("/admin/feeds/{feed}/delete", Admin, (*UI).confirmDeleteFeed),
	post("/admin/feeds/{feed}/delete", Admin, buttonForm, (*UI).deleteFeed),
	post("/admin/feeds/{feed}/patchsets", Admin, buttonForm, (*UI).managePatchsets),
	post("/admin/rollouts/{id}", Admin, buttonForm, (*UI).rolloutAction),
	get("/admin/patches", Reader, (*UI).patches),
	{Route{Method: "POST", Path: "/admin/patches", Access: Admin, Upload: true, MaxBody: uploadMaxBody}, (*UI).upload},
	get("/admin/users", Reader, (*UI).users),
	post("/admin/users", Admin, editForm, (*UI).addUser),
	post("/admin/users/{name}/delete", Admin, buttonForm, (*UI).deleteUser),
	get("/admin/apikeys", Reader, (*UI).apiKeys),
	post("/admin/apikeys", Admin, editForm, (*UI).addAPIKey),
	post("/admin/apikeys/{id}/delete", Admin, buttonForm, (*UI).deleteAPIKey),
	get("/admin/audit", Reader, (*UI).auditLog),
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
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
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
	u := &UI{cfg: cfg, core: cfg.Core, mux: http.NewServeMux(), pages: parsePages()}
	var shared sharedFailures
	if cfg.Core.Replicated() {
		shared = cfg.Core
	}
	u.throttle = newThrottle(u.now, shared)
	u.hashes = auth.NewLimiter(cfg.HashMemory)
	for _, rt := range routes {
		h := rt.h
		u.mux.Handle(rt.Method+" "+rt.Path, u.serve(rt.Route, func(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
			return h(u, w, r, c)
		}))
	}
	u.mux.Handle("/admin/", u.serve(Route{Method: "GET", Access: Reader}, func(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
		return errorf(http.StatusNotFound, "no such page")
	}))
	return u
}

func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

func (u *UI) now() time.Time { return u.core.Now() }

func errorf(code int, format string, args ...any) error { return httperr.New(code, format, args...) }

// reqCtx is what a handler knows of the request beyond it.
type reqCtx struct {
	user   *store.User // nil on public pages
	sess   *store.Session
	upload map[string][]byte // the patch upload's parts, by name
}

func (c *reqCtx) admin() bool { return c.user != nil && c.user.Role == apitype.RoleAdmin }

// actor is who makes a change from the UI: the signed-in user.
func (c *reqCtx) actor(r *http.Request) core.Actor { return core.Operator(c.user, httperr.RemoteIP(r)) }

// contentSecurityPolicy lets a page load only its own stylesheet and
// post forms only to this portal: no script, inline style, frame, plugin
// or other origin. The pages need nothing else.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// serve sets the security headers of every answer, authenticates, checks
// the role and the CSRF token of a change, runs h, and renders its error:
// the one place errors become pages.
func (u *UI) serve(rt Route, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		c := &reqCtx{}
		err := u.authorize(w, r, rt, c)
		if err == nil {
			err = h(w, r, c)
		}
		if err == nil || errors.Is(err, errHandled) {
			return
		}
		we := httperr.From(err)
		level := slog.LevelInfo
		if we.Code >= 500 {
			level = slog.LevelError
		}
		u.cfg.Log.Log(r.Context(), level, "admin request failed", "method", r.Method, "path", r.URL.Path, "status", we.Code, "error", we.Error())
		for k, v := range we.Header {
			w.Header()[k] = v
		}
		if we.Code == http.StatusTooManyRequests || we.Code == http.StatusUnauthorized && rt.Access == Public {
			// The sign-in form again, with the reason.
			u.renderLogin(w, r, we.Code, we.Msg)
			return
		}
		u.render(w, r, c, we.Code, "error", "Error", map[string]any{"Code": we.Code, "Status": http.StatusText(we.Code), "Message": we.Msg})
	})
}

// errHandled is a handler's "the response is written" (a redirect).
var errHandled = errors.New("handled")

func redirect(w http.ResponseWriter, r *http.Request, to string) error {
	http.Redirect(w, r, to, http.StatusSeeOther)
	return errHandled
}

func trimLines(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Core is the core the UI is a face of.
func (u *UI) Core() *core.Core { return u.core }
