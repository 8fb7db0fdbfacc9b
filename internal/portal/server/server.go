// Package server is eportal's HTTP face: the agent API (register, signed
// index, check-in), content-addressed bundles, KernelCare's patch-server
// paths, ePortal's REST API, the Nagios API, the metrics, and publishing;
// and under /admin/ it mounts the web UI (internal/portal/web). Every
// handler turns its request into a call of the portal's core
// (internal/portal/core) and the answer into JSON or text; it decides
// nothing itself.
package server

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/httperr"
	"github.com/kcare/kcare/internal/portal/web"
)

// Config is what a Server needs.
type Config struct {
	Core *core.Core
	// Web is what the web UI under /admin/ needs beside the core: its
	// session store and sign-in settings. Its Core and Log are this
	// Config's.
	Web web.Config
	// MetricsToken, when not empty, is the bearer token GET /metrics
	// requires (Authorization: Bearer TOKEN).
	MetricsToken string
	// MetricsAllow, when not empty, are the only networks GET /metrics
	// answers; others get 403.
	MetricsAllow []netip.Prefix
	// MetricsSalt keys the hash that names activation keys in /metrics
	// (KeyID). Empty means a random salt for this process, so the names
	// change when it restarts.
	MetricsSalt []byte
	Log         *slog.Logger
}

// Server serves the portal.
type Server struct {
	cfg     Config
	core    *core.Core
	mux     *http.ServeMux
	metrics *metrics
	guesses *guessThrottle
	ui      *web.UI
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.MetricsSalt) == 0 {
		cfg.MetricsSalt = make([]byte, 32)
		rand.Read(cfg.MetricsSalt)
	}
	s := &Server{cfg: cfg, core: cfg.Core, mux: http.NewServeMux()}
	s.guesses = newGuessThrottle(s.now)
	s.metrics = newMetrics(s)
	s.routes()
	return s
}

// Handler returns the portal's HTTP handler. Over TLS every answer says
// Strict-Transport-Security, so a browser that has seen the portal over
// HTTPS does not go back to plain HTTP.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		s.mux.ServeHTTP(w, r)
	})
}

func (s *Server) now() time.Time { return s.core.Now() }

func (s *Server) routes() {
	s.mount() // routes.go
	// The admin web UI; the /admin/api/ routes above are more specific.
	wc := s.cfg.Web
	wc.Core, wc.Log = s.core, s.cfg.Log
	s.ui = web.New(wc)
	s.mux.Handle("GET /admin/", s.ui)
	s.mux.Handle("POST /admin/", s.ui)
}

// errorf is an error answer with a message made as fmt.Sprintf makes it.
func errorf(code int, format string, args ...any) error { return httperr.New(code, format, args...) }

// agentError answers the agent API with one of its error codes; err, if
// any, is for the log.
func agentError(status int, code apitype.ErrorCode, err error) error {
	return httperr.Wrap(status, string(code), err)
}

// wrap turns a handler's error into a JSON answer, keeping the detail
// for the log: the one place the API's errors become answers.
func (s *Server) wrap(f func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := f(w, r)
		if err == nil {
			return
		}
		he := httperr.From(err)
		level := slog.LevelInfo
		if he.Code >= 500 {
			level = slog.LevelError
		}
		// The route's pattern, not the path: a path can hold a key.
		s.cfg.Log.Log(r.Context(), level, "request failed", "method", r.Method, "route", r.Pattern, "status", he.Code, "error", he.Error())
		for k, v := range he.Header {
			w.Header()[k] = v
		}
		writeJSON(w, he.Code, apitype.Error{Error: he.Msg})
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	return json.NewEncoder(w).Encode(v)
}

// agentAuth authenticates a server by its id and secret (HTTP basic), or
// by an IP license when it sent none, and answers a failure with the
// agent API's code.
func (s *Server) agentAuth(r *http.Request) (*core.Caller, error) {
	var cl *core.Caller
	var err error
	if id, secret, ok := r.BasicAuth(); ok {
		cl, err = s.core.Authenticate(r.Context(), id, secret)
	} else {
		cl, err = s.core.IPLicensed(r.Context(), httperr.RemoteIP(r))
	}
	switch {
	case errors.Is(err, core.ErrUnregistered):
		// An unknown server and a wrong secret get one answer, so that
		// the answer does not tell which server ids exist.
		return nil, agentError(http.StatusUnauthorized, apitype.CodeUnregistered, err)
	case errors.Is(err, core.ErrKeyRevoked):
		return nil, agentError(http.StatusUnauthorized, apitype.CodeKeyRevoked, err)
	}
	return cl, err
}

// Core is the core the server is a face of.
func (s *Server) Core() *core.Core { return s.core }
