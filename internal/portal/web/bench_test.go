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
	"strconv"
	"testing"

	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
)

// BenchmarkServersPage renders /admin/servers over HTTP with 1,000,000
// servers (KCARE_BENCH_SERVERS to change): the first page, a later page
// by cursor, and filtered by key, by state and by hostname search. SQLite
// always; PostgreSQL too when KCARE_TEST_POSTGRES is set.
func BenchmarkServersPage(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("KCARE_BENCH_SERVERS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	kinds := []string{"sqlite"}
	if os.Getenv("KCARE_TEST_POSTGRES") != "" {
		kinds = append(kinds, "postgres")
	}
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			st := storetest.Open(b, kind)
			if err := st.AddKey(ctx, &store.Key{Key: "bench"}); err != nil {
				b.Fatal(err)
			}
			if err := st.AddKey(ctx, &store.Key{Key: "small"}); err != nil {
				b.Fatal(err)
			}
			if err := store.SeedServers(ctx, st, "bench", n); err != nil {
				b.Fatal(err)
			}
			if err := store.SeedServers(ctx, st, "small", 1000); err != nil {
				b.Fatal(err)
			}
			hash, _ := auth.HashPassword("bench password")
			st.AddUser(ctx, &store.User{Name: "alice", PasswordHash: hash, Role: "admin"})
			srv := server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: b.TempDir()}})})
			hs := httptest.NewServer(srv.Handler())
			defer hs.Close()
			c := signIn(b, hs.URL)
			// The cursor of a page deep in the list.
			list, err := st.Servers(ctx, store.ServerFilter{Limit: 1, Offset: n / 2})
			if err != nil || len(list) == 0 {
				b.Fatal(err)
			}
			cur := store.CursorOf(list[0], "")
			for _, q := range []struct{ name, query string }{
				{"first-page", ""},
				{"later-page", "after=" + url.QueryEscape(cur.Value) + "&after_id=" + url.QueryEscape(cur.ID)},
				{"by-hostname", "sort=hostname"},
				{"key-small", "key=small"},
				{"state-inactive", "state=inactive"},
				{"state-outofdate", "state=outofdate"},
				{"search", "q=node-0500"},
			} {
				b.Run(q.name, func(b *testing.B) {
					for b.Loop() {
						resp, err := c.Get(hs.URL + "/admin/servers?" + q.query)
						if err != nil {
							b.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Fatalf("status %d", resp.StatusCode)
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
