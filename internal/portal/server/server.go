// Package server is eportal's HTTP face: the agent API (register, signed
// index, check-in), content-addressed bundles, KernelCare's patch-server
// paths, ePortal's REST API, and publishing.
package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/resolve"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/web"
	"github.com/kcare/kcare/internal/trust"
)

// DefaultIndexTTL is how long a signed index stays valid.
const DefaultIndexTTL = 72 * time.Hour

// Config is what a Server needs.
type Config struct {
	Store      store.Store
	Blobs      blobs.Store
	IndexKey   *trust.Signer  // the portal's online key: signs indexes
	Publishers *trust.Keyring // publisher keys a bundle must be signed by
	IndexTTL   time.Duration  // 0: DefaultIndexTTL
	// InactiveAge is how long a server may go without checking in before
	// it counts as inactive; 0 means fleet.DefaultInactiveAge.
	InactiveAge time.Duration
	// SessionIdle is how long a web UI session lives without a request;
	// 0 means web.DefaultIdleTimeout.
	SessionIdle time.Duration
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
	Now         func() time.Time
}

// Server serves the portal.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	metrics *metrics
	guesses *guessThrottle
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.IndexTTL <= 0 {
		cfg.IndexTTL = DefaultIndexTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.MetricsSalt) == 0 {
		cfg.MetricsSalt = make([]byte, 32)
		rand.Read(cfg.MetricsSalt)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
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

func (s *Server) now() time.Time { return s.cfg.Now().UTC() }

func (s *Server) routes() {
	s.mount() // routes.go
	// The admin web UI; the /admin/api/ routes above are more specific.
	ui := web.New(web.Config{
		Store: s.cfg.Store,
		Publish: func(ctx context.Context, data, sig []byte, channel apitype.Channel, patchset string) (*store.Level, error) {
			return s.Publish(ctx, data, sig, PublishOptions{Channel: channel, Patchset: patchset})
		},
		ManagePatchsets: ManagePatchsets, NewKey: NewKey,
		InactiveAge: s.cfg.InactiveAge, IdleTimeout: s.cfg.SessionIdle, Log: s.cfg.Log, Now: s.cfg.Now,
	})
	s.mux.Handle("GET /admin/", ui)
	s.mux.Handle("POST /admin/", ui)
}

// httpError is an error with a status and a message for the client; the
// wrapped error, if any, is for the log only.
type httpError struct {
	code   int
	msg    string // shown to the client; for the agent API an apitype.ErrorCode
	err    error
	header http.Header // set on the response, such as WWW-Authenticate
}

func (e *httpError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%d %s: %v", e.code, e.msg, e.err)
	}
	return fmt.Sprintf("%d %s", e.code, e.msg)
}

func (e *httpError) Unwrap() error { return e.err }

func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// agentError answers the agent API with one of its error codes; err, if
// any, is for the log.
func agentError(status int, code apitype.ErrorCode, err error) error {
	return &httpError{code: status, msg: string(code), err: err}
}

// wrap turns a handler's error into a JSON response, keeping the detail
// for the log.
func (s *Server) wrap(f func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := f(w, r)
		if err == nil {
			return
		}
		var he *httpError
		if !errors.As(err, &he) {
			he = &httpError{code: http.StatusInternalServerError, msg: "internal error", err: err}
		}
		level := slog.LevelInfo
		if he.code >= 500 {
			level = slog.LevelError
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			he = errBodyTooLarge
		}
		// The route's pattern, not the path: a path can hold a key.
		s.cfg.Log.Log(r.Context(), level, "request failed", "method", r.Method, "route", r.Pattern, "status", he.code, "error", he.Error())
		for k, v := range he.header {
			w.Header()[k] = v
		}
		writeJSON(w, he.code, apitype.Error{Error: he.msg})
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

// remoteIP is the address the request came from.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// unknownServerHash is compared against when a server id is unknown.
var unknownServerHash = auth.HashSecret("no server has this secret")

// caller is who an agent request is from.
type caller struct {
	server *store.Server
	feed   string
	key    *store.Key // nil for an IP-licensed server
}

// agentAuth authenticates a server by its id and secret (HTTP basic), or
// by an IP license when it sent none.
func (s *Server) agentAuth(ctx context.Context, r *http.Request) (*caller, error) {
	if a := authnOf(r); a != nil && a.caller != nil {
		return a.caller, nil // the route's guard has done it
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		return s.ipLicensed(ctx, r)
	}
	// An unknown server and a wrong secret get one answer, so that the
	// answer does not tell which server ids exist.
	srv, err := s.cfg.Store.Server(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		auth.SecretMatches(unknownServerHash, secret) // as long as a wrong secret takes
		return nil, agentError(http.StatusUnauthorized, apitype.CodeUnregistered, errors.New("unknown server id"))
	}
	if err != nil {
		return nil, err
	}
	if !auth.SecretMatches(srv.SecretHash, secret) {
		return nil, agentError(http.StatusUnauthorized, apitype.CodeUnregistered, errors.New("wrong server secret"))
	}
	c := &caller{server: srv, feed: apitype.MainFeed}
	if srv.Key != "" {
		k, err := s.cfg.Store.KeySettings(ctx, srv.Key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, agentError(http.StatusUnauthorized, apitype.CodeKeyRevoked, nil)
		}
		if err != nil {
			return nil, err
		}
		c.key, c.feed = k, k.Feed
	}
	return c, nil
}

func cidrContains(cidr, ip string) bool {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(ip)
	return err == nil && p.Contains(a.Unmap())
}

// ipLicensed authenticates a server that sent no credentials by the IP
// license covering its address (resolve.IPLicense).
func (s *Server) ipLicensed(ctx context.Context, r *http.Request) (*caller, error) {
	ip, err := netip.ParseAddr(remoteIP(r))
	if err != nil {
		return nil, agentError(http.StatusUnauthorized, apitype.CodeUnregistered, nil)
	}
	ip = ip.Unmap()
	lics, err := s.cfg.Store.IPLicenses(ctx)
	if err != nil {
		return nil, err
	}
	l := resolve.IPLicense(lics, ip.String())
	if l == nil {
		return nil, agentError(http.StatusUnauthorized, apitype.CodeUnregistered, nil)
	}
	srv := &store.Server{ID: "ip-" + strings.NewReplacer(":", "-", ".", "-").Replace(ip.String()), IP: ip.String()}
	return &caller{server: srv, feed: l.Feed}, nil
}
