package server

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
)

// countingBody is a large request body that counts what is read of it.
type countingBody struct {
	left int64
	read atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, context.Canceled // never reached by a bounded reader
	}
	n := int64(len(p))
	if n > b.left {
		n = b.left
	}
	clear(p[:n])
	b.left -= n
	b.read.Add(n)
	return int(n), nil
}

func (b *countingBody) Close() error { return nil }

// fillPattern makes a path for a route pattern, with placeholders as a
// client could send them.
func fillPattern(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.NewReplacer("{build_id}", "5f2c3b0d9d2e5a2d1b7f7d1c0a9e8b7c6d5e4f30",
		"{digest}", strings.Repeat("a", 64), "{$}", "").Replace(path)
	for strings.Contains(path, "{") {
		i, j := strings.Index(path, "{"), strings.Index(path, "}")
		path = path[:i] + "x" + path[j+1:]
	}
	return method, path
}

// TestRoutesAuthBeforeBody walks the route table: every route that takes
// a body or changes anything is authenticated; every authenticated route
// refuses a caller without credentials, with wrong ones, or (for an admin
// route) with a read-only token, and reads no byte of a 64 MiB body
// first. A route whose credential is the body itself (registration) reads
// no more than its limit.
func TestRoutesAuthBeforeBody(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s := New(Config{Core: core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: t.TempDir()}, IndexKey: bundletest.Signer("routes test index key"), Now: func() time.Time { return now }}), MetricsToken: "scrape-token"})
	ctx := context.Background()
	tokens := map[apitype.Role]string{}
	for _, role := range apitype.Roles {
		if err := st.AddUser(ctx, &store.User{Name: string(role) + "-user", PasswordHash: "x", Role: role, Created: now}); err != nil {
			t.Fatal(err)
		}
		tok := auth.NewSecret()
		if err := st.AddToken(ctx, &store.Token{Hash: auth.HashSecret(tok), User: string(role) + "-user", Created: now}); err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok
	}
	if err := st.AddKey(ctx, &store.Key{Key: "k-routes-test", Feed: "main", Created: now}); err != nil {
		t.Fatal(err)
	}
	srv := &store.Server{ID: "srv-routes", SecretHash: auth.HashSecret("right secret"), Hostname: "web1", IP: "192.0.2.1", Registered: now}
	if err := st.Register(ctx, "k-routes-test", srv); err != nil {
		t.Fatal(err)
	}

	type attempt struct {
		name  string
		hdr   map[string]string
		codes []int // any of these
	}
	const bodySize = 64 << 20
	checked := 0
	for _, rt := range s.routeTable() {
		method, path := fillPattern(rt.pattern)
		if rt.auth == authNone {
			if method != "GET" || rt.body != 0 {
				t.Errorf("%s: takes a body or changes state, yet anyone may call it", rt.pattern)
			}
			continue
		}
		var attempts []attempt
		switch rt.auth {
		case authAgent:
			attempts = []attempt{
				{"no_credentials", nil, []int{401}},
				{"unknown_server", map[string]string{"Authorization": basicAuth("nobody", "right secret")}, []int{401}},
				{"wrong_secret", map[string]string{"Authorization": basicAuth(srv.ID, "wrong secret")}, []int{401}},
			}
		case authToken:
			attempts = []attempt{
				{"no_token", nil, []int{401}},
				{"wrong_token", map[string]string{"X-Api-Key": auth.NewSecret()}, []int{401}},
			}
			if rt.role == roleAdmin {
				attempts = append(attempts, attempt{"readonly_token", map[string]string{"X-Api-Key": tokens[apitype.RoleReadOnly]}, []int{403}})
			}
		case authMetrics:
			attempts = []attempt{
				{"no_token", nil, []int{401}},
				{"wrong_token", map[string]string{"Authorization": "Bearer nope"}, []int{401}},
			}
		case authReseller:
			// KernelCare's answer for an unknown reseller or token, or 413
			// for a declared body the route does not take.
			attempts = []attempt{{"unknown_reseller", nil, []int{404, 413, 429}}}
		case authActivationKey:
			// The key is in the path (Nagios: 404 as KernelCare answers)
			// or is the body itself (registration: refused at its limit).
			attempts = []attempt{{"unknown_key", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []int{400, 404, 413, 429}}}
		default:
			t.Errorf("%s: auth kind %v has no test", rt.pattern, rt.auth)
		}
		allowed := int64(0)
		if rt.auth == authActivationKey && rt.body > 0 {
			allowed = rt.body + 1 // the credential is in the body: read up to the limit, no further
		}
		for _, a := range attempts {
			for _, chunked := range []bool{true, false} {
				body := &countingBody{left: bodySize}
				req := httptest.NewRequest(method, path, nil)
				req.Body = body
				req.ContentLength = bodySize
				if chunked {
					req.ContentLength = -1
				}
				req.RemoteAddr = "127.0.0.2:40000"
				for k, v := range a.hdr {
					req.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				s.Handler().ServeHTTP(w, req)
				ok := false
				for _, c := range a.codes {
					ok = ok || w.Code == c
				}
				if !ok {
					t.Errorf("%s %s (chunked %v): %d %s; want one of %v", rt.pattern, a.name, chunked, w.Code, strings.TrimSpace(w.Body.String()), a.codes)
				}
				if n := body.read.Load(); n > allowed {
					t.Errorf("%s %s (chunked %v): read %d bytes of the body before refusing; want at most %d", rt.pattern, a.name, chunked, n, allowed)
				}
				checked++
			}
		}
	}
	if checked < 40 {
		t.Errorf("walked %d refusals; the table seems to have lost its authenticated routes", checked)
	}
}

func basicAuth(user, pass string) string {
	r := httptest.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}

// TestRouteDefaultsStrictest: a route that says nothing of its caller
// needs an admin's API token and takes no body; being open is said.
func TestRouteDefaultsStrictest(t *testing.T) {
	var rt route
	if rt.auth != authToken || rt.role != roleAdmin || rt.body != 0 || rt.guess {
		t.Errorf("the zero route is %v/%q/body %d, want an admin's token and no body", rt.auth, rt.role, rt.body)
	}
}
