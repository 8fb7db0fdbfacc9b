package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/portal/web"
)

// BenchmarkServersPage renders every page of the admin UI over HTTP
// (signed in, cookie jar) with 1,000,000 servers (KCARE_BENCH_SERVERS to
// change) under one key, 1,000 under a second key in a feed of its own,
// and three levels of each of their kernels: each page a GET route of the
// UI's table names (the overview, a server, a key, a feed, ...), and the
// servers page first, by cursor, sorted, and under every filter and
// state, and searched by hostname and by address, for a term most
// servers match and one a single server does. SQLite always; PostgreSQL
// too when KCARE_TEST_POSTGRES is set.
func BenchmarkServersPage(b *testing.B) {
	n := storetest.BenchServers(b)
	kinds := []string{"sqlite"}
	if os.Getenv("KCARE_TEST_POSTGRES") != "" {
		kinds = append(kinds, "postgres")
	}
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			st := storetest.Open(b, kind)
			if err := st.AddFeed(ctx, &store.Feed{Name: "slow", DeployAfter: 48 * time.Hour}); err != nil {
				b.Fatal(err)
			}
			if err := st.AddKey(ctx, &store.Key{Key: "bench"}); err != nil {
				b.Fatal(err)
			}
			if err := st.AddKey(ctx, &store.Key{Key: "small", Feed: "slow"}); err != nil {
				b.Fatal(err)
			}
			if err := store.SeedLevels(ctx, st); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if err := store.SeedServers(ctx, st, "bench", n); err != nil {
				b.Fatal(err)
			}
			if err := store.SeedServers(ctx, st, "small", 1000); err != nil {
				b.Fatal(err)
			}
			b.Logf("%s: seeded %d servers in %s", kind, n+1000, time.Since(start).Round(time.Millisecond))
			hash, _ := auth.HashPassword("bench password")
			st.AddUser(ctx, &store.User{Name: "alice", PasswordHash: hash, Role: "admin"})
			srv := server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: b.TempDir()}})})
			hs := httptest.NewServer(srv.Handler())
			defer hs.Close()
			c := signIn(b, hs.URL)
			// A server deep in the list: its page, its cursor, its name.
			list, err := st.Servers(ctx, store.ServerFilter{Limit: 1, Offset: n / 2})
			if err != nil || len(list) == 0 {
				b.Fatal(err)
			}
			deep := list[0]
			cur := store.CursorOf(deep, "")
			pages := []struct{ name, path string }{
				{"servers/first-page", "/admin/servers"},
				{"servers/later-page", "/admin/servers?after=" + url.QueryEscape(cur.Value) + "&after_id=" + url.QueryEscape(cur.ID)},
				{"servers/by-hostname", "/admin/servers?sort=hostname"},
				{"servers/by-ip-desc", "/admin/servers?sort=ip&desc=1"},
				{"servers/key-small", "/admin/servers?key=small"},
				{"servers/key-bench", "/admin/servers?key=bench"},
				{"servers/feed-main", "/admin/servers?feed=main"},
				{"servers/feed-slow", "/admin/servers?feed=slow"},
				{"servers/tag-common", "/admin/servers?tag=env:prod"},
				{"servers/tag-none", "/admin/servers?tag=rack:r99"},
				{"servers/search-common", "/admin/servers?q=node-05"},
				{"servers/search-one-host", "/admin/servers?q=" + url.QueryEscape(deep.Hostname)},
				{"servers/search-ip", "/admin/servers?q=" + url.QueryEscape(deep.IP)},
				{"servers/search-none", "/admin/servers?q=no-such-host"},
			}
			for _, s := range []string{"uptodate", "outofdate", "unsupported", "inactive"} {
				pages = append(pages, struct{ name, path string }{"servers/state-" + s, "/admin/servers?state=" + s})
			}
			pages = append(pages, struct{ name, path string }{"servers/state-outofdate-key-small", "/admin/servers?state=outofdate&key=small"})
			// Every other page of the UI's route table.
			args := strings.NewReplacer("{$}", "", "{id}", url.PathEscape(deep.ID), "{key}", "bench", "{feed}", "main")
			names := strings.NewReplacer("{$}", "overview", "{", "", "}", "")
			for _, rt := range web.Routes() {
				if rt.Method != "GET" || rt.Access == web.Public || rt.Path == "/admin/servers" {
					continue
				}
				pages = append(pages, struct{ name, path string }{names.Replace(strings.TrimPrefix(rt.Path, "/admin/")), args.Replace(rt.Path)})
			}
			// One view first: the first query of a fresh database reads
			// its pages from the disk.
			if resp, err := c.Get(hs.URL + "/admin/servers"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			for _, pg := range pages {
				b.Run(pg.name, func(b *testing.B) {
					for b.Loop() {
						resp, err := c.Get(hs.URL + pg.path)
						if err != nil {
							b.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Fatalf("GET %s: status %d", pg.path, resp.StatusCode)
						}
					}
				})
			}
		})
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func signIn(b *testing.B, base string) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(base + "/admin/login")
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(body)
	if m == nil {
		b.Fatal("no CSRF token on the sign-in page")
	}
	resp, err = c.PostForm(base+"/admin/login", url.Values{"csrf": {string(m[1])}, "user": {"alice"}, "password": {"bench password"}})
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("sign in: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	return c
}
