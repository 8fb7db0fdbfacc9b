package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/httpbound"
	"github.com/kcare/kcare/internal/portal/httperr"
	"github.com/kcare/kcare/internal/portal/store"
)

// authKind is how a route's caller proves who it is. Its zero value is
// the strictest, authToken: a route that says nothing needs an operator's
// API token, and one that anyone may call opts out with authNone.
type authKind int

const (
	// authToken: an operator's API token (X-Api-Key), with the route's
	// role.
	authToken authKind = iota
	// authAgent: a registered server by its id and secret (HTTP basic),
	// or a server in an IP license.
	authAgent
	// authActivationKey: an activation key in the path or the form body,
	// as KernelCare has it (registration, the Nagios API). The handler
	// checks the key; wrong keys are throttled per source before it runs.
	authActivationKey
	// authReseller: a reseller's login and token in the path.
	authReseller
	// authMetrics: Config.MetricsToken and Config.MetricsAllow.
	authMetrics
	// authNone: anyone (public keys, bundles by digest, the installer).
	authNone
)

func (k authKind) String() string {
	return [...]string{"token", "agent", "activation-key", "reseller", "metrics", "none"}[k]
}

// Roles a route with authToken may need. The zero value is roleAdmin: a
// route that any operator may read says roleAny.
const (
	roleAdmin = apitype.Role("")
	roleAny   = apitype.RoleReadOnly
)

// Body limits of the routes that take one.
const (
	formBodyMax    = 64 << 10 // register's form, a check-in
	restBodyMax    = 1 << 20  // a REST API JSON object
	publishBodyMax = bundle.MaxBundleSize + bundle.MaxSignatureSize + 1<<20
)

// route is one entry of the portal's routing table: who may call it and
// how large a body it takes. The table is the only place these are said;
// Handler mounts it and the tests walk it.
type route struct {
	pattern string       // http.ServeMux pattern: "METHOD /path"
	auth    authKind     // checked before the handler runs and before any body is read
	role    apitype.Role // authToken: roleAdmin (the zero value), or roleAny for any operator
	body    int64        // the most bytes a request body may hold; 0: no body
	// guess: the route takes an activation key (or a reseller token) a
	// caller could guess; wrong ones are throttled per source
	// (guessThrottle), checked before anything else.
	guess  bool
	handle func(w http.ResponseWriter, r *http.Request) error
}

// routeTable is every route of the portal but the admin web UI, which
// mounts its own table (internal/portal/web) under /admin/.
func (s *Server) routeTable() []route {
	rt := []route{
		{"GET /metrics", authMetrics, roleAny, 0, false, s.serveMetrics},
		// The agent.
		{"POST /admin/api/register", authActivationKey, roleAny, formBodyMax, true, s.register},
		{"POST /api/v1/unregister", authAgent, roleAny, 0, false, s.unregister},
		{"GET /api/v1/index/{build_id}", authAgent, roleAny, 0, false, s.index},
		{"POST /api/v1/checkin", authAgent, roleAny, formBodyMax, false, s.checkin},
		{"POST /api/v1/run", authAgent, roleAny, formBodyMax, false, s.run},
		{"GET /api/v1/license", authAgent, roleAny, 0, false, s.license},
		{"GET /blobs/sha256/{digest}", authNone, roleAny, 0, false, s.blob},
		{"GET /keys/portal.pub", authNone, roleAny, 0, false, s.portalKey},
		{"GET /healthz", authNone, roleAny, 0, false, func(w http.ResponseWriter, r *http.Request) error {
			_, err := fmt.Fprintln(w, "ok")
			return err
		}},
		// Publishing.
		{"POST /api/v1/publish", authToken, roleAdmin, publishBodyMax, false, s.publish},
		{"GET /api/v1/mirror/levels", authToken, roleAny, 0, false, s.mirrorLevels},
		// ePortal's REST API (TuxCare's "ePortal API" page): an operator's
		// API token (X-Api-Key) or user and password (HTTP basic).
		{"GET /admin/api/servers", authToken, roleAny, 0, false, s.restServers},
		{"DELETE /admin/api/servers", authToken, roleAdmin, 0, false, s.restCleanServers},
		{"POST /admin/api/delete_server", authToken, roleAdmin, restBodyMax, false, s.restDeleteServer},
		{"POST /admin/api/set_tags", authToken, roleAdmin, restBodyMax, false, s.restSetTags},
		{"GET /admin/api/servers/{id}/vex", authToken, roleAny, 0, false, s.serverVEX},
		{"GET /admin/api/keys/", authToken, roleAny, 0, false, s.restKeys},
		{"POST /admin/api/keys/", authToken, roleAdmin, restBodyMax, false, s.restPutKey},
		{"DELETE /admin/api/keys/{key}", authToken, roleAdmin, 0, false, s.restDeleteKey},
		{"GET /admin/api/feeds/", authToken, roleAny, 0, false, s.restFeeds},
		{"POST /admin/api/feeds/", authToken, roleAdmin, restBodyMax, false, s.restPutFeed},
		{"DELETE /admin/api/feeds/{name}", authToken, roleAdmin, 0, false, s.restDeleteFeed},
		{"GET /admin/api/patchsets/", authToken, roleAny, 0, false, s.restPatchsets},
		{"POST /admin/api/patchsets/manage", authToken, roleAdmin, restBodyMax, false, s.restManagePatchsets},
		{"GET /admin/api/users/", authToken, roleAny, 0, false, s.restUsers},
		// The scanner integrations' per-key listing: the activation key in
		// the path is the credential, as in ePortal; read-only.
		{"GET /admin/api/kcare/patchset/{key}", authActivationKey, roleAny, 0, true, s.restKeyPatchset},
		// Registration at ePortal's REGISTRATION_URL (…/admin/api/kcare).
		{"POST /admin/api/kcare/register", authActivationKey, roleAny, formBodyMax, true, s.register},
		// Safe rollout.
		{"GET /admin/api/rollouts", authToken, roleAny, 0, false, s.restRollouts},
		{"GET /admin/api/rollouts/{id}", authToken, roleAny, 0, false, s.restRollout},
		{"POST /admin/api/rollouts/{id}/{action}", authToken, roleAdmin, 0, false, s.restRolloutAction},
		{"GET /admin/api/feeds/{feed}/rollout", authToken, roleAny, 0, false, s.restRolloutPolicy},
		{"PUT /admin/api/feeds/{feed}/rollout", authToken, roleAdmin, restBodyMax, false, s.restSetRolloutPolicy},
		{"PUT /admin/api/key-windows", authToken, roleAdmin, restBodyMax, false, s.restKeyWindow},
		{"PUT /admin/api/patchsets/{patchset}/urgent", authToken, roleAdmin, restBodyMax, false, s.restPatchsetUrgent},
		{"GET /admin/api/kcare/nagios-rollouts", authToken, roleAny, 0, false, s.nagiosRollouts},
		// KernelCare's Nagios API.
		{"GET /admin/api/kcare/nagios/{key}", authActivationKey, roleAny, 0, true, s.nagiosKey},
		{"GET /api/kcare/nagios/{key}", authActivationKey, roleAny, 0, true, s.nagiosKey},
		{"GET /api/kcare/nagios-res/{login}/{token}", authReseller, roleAny, 0, true, s.nagiosReseller},
	}
	// Any other path under /admin/api/ is a JSON 404, never the web UI;
	// a request that could change something is authenticated first.
	rt = append(rt, route{"GET /admin/api/", authNone, roleAny, 0, false, s.restNotFound})
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		rt = append(rt, route{m + " /admin/api/", authToken, roleAny, 0, false, s.restNotFound})
	}
	s.installerRoutes(func(pattern string, f func(w http.ResponseWriter, r *http.Request) error) {
		rt = append(rt, route{pattern, authNone, roleAny, 0, false, f})
	})
	// KernelCare's patch-server paths: /[PREFIX/]KERNEL_ID/version and
	// /[PREFIX/]KERNEL_ID/LEVEL/kpatch.info.
	return append(rt, route{"GET /", authNone, roleAny, 0, false, s.kcarePaths})
}

// guard runs a route: it authenticates the caller and checks the role
// before the handler runs, so no body is read for anyone who may not send
// one, then bounds the body.
func (s *Server) guard(rt route) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if rt.guess {
			if wait := s.guesses.wait(requestSource(r)); wait > 0 {
				return tooManyAttempts(wait)
			}
		}
		a, err := s.authenticate(rt, r)
		if err != nil {
			return err
		}
		if r.ContentLength > rt.body {
			return httperr.BodyTooLarge
		}
		r.Body = http.MaxBytesReader(w, r.Body, rt.body)
		rc := http.NewResponseController(w)
		start := time.Now()
		if rt.body > restBodyMax {
			// An authenticated upload may take longer than ReadTimeout,
			// and its answer (or error) comes after it.
			start = httpbound.ExtendForUpload(w, start, rt.body)
		}
		w = &paced{ResponseWriter: w, rc: rc, start: start}
		if a != nil {
			r = r.WithContext(context.WithValue(r.Context(), authnKey{}, a))
		}
		return rt.handle(w, r)
	}
}

// authn is who authenticate found: an operator or an agent.
type authn struct {
	user   *store.User
	caller *core.Caller
}

type authnKey struct{}

func authnOf(r *http.Request) *authn {
	a, _ := r.Context().Value(authnKey{}).(*authn)
	return a
}

// userOf is the operator a route with authToken was called by.
func userOf(r *http.Request) *store.User { return authnOf(r).user }

// authenticate checks a request's credentials as its route says.
func (s *Server) authenticate(rt route, r *http.Request) (*authn, error) {
	switch rt.auth {
	case authAgent:
		c, err := s.agentAuth(r)
		if err != nil {
			return nil, err
		}
		return &authn{caller: c}, nil
	case authToken:
		u, err := s.apiUser(r, rt.role)
		if err != nil {
			return nil, err
		}
		return &authn{user: u}, nil
	case authMetrics:
		return nil, s.metricsAuth(r)
	}
	return nil, nil
}

// mount adds the route table to the mux.
func (s *Server) mount() {
	for _, rt := range s.routeTable() {
		s.mux.Handle(rt.pattern, s.metrics.instrument(rt.pattern, s.wrap(s.guard(rt))))
	}
}

// Route is one route of the API as those outside see it: its pattern,
// how its caller authenticates, and the most its body may hold.
type Route struct {
	Method, Path string
	Auth         string // "token", "agent", "activation-key", "reseller", "metrics" or "none"
	Admin        bool   // with Auth "token": only an admin's token
	MaxBody      int64
}

// Routes lists the API's routes (the web UI's are web.Routes), from the
// table Handler mounts.
func (s *Server) Routes() []Route {
	var out []Route
	for _, rt := range s.routeTable() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		out = append(out, Route{Method: method, Path: path, Auth: rt.auth.String(), Admin: rt.auth == authToken && rt.role == roleAdmin, MaxBody: rt.body})
	}
	return out
}
