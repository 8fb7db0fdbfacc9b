package ui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portalclient"
)

const chromium = "/usr/bin/chromium"

// newBrowser starts headless Chromium, or skips the test without it (but
// fails under CI=true).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromium
	if _, err := os.Stat(path); err != nil {
		if p, err := exec.LookPath("chromium"); err == nil {
			path = p
		} else if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (apt-get install chromium)")
		} else {
			t.Skip("chromium is not installed (apt-get install chromium)")
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.Flag("headless", true), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 800))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx, chromedp.WithErrorf(func(string, ...any) {}))
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel3)
	return ctx
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// screenshot writes docs/screenshots/name.png when KCARE_UPDATE_SCREENSHOTS=1.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("KCARE_UPDATE_SCREENSHOTS") != "1" {
		return
	}
	var buf []byte
	run(t, ctx, "screenshot "+name, chromedp.EmulateViewport(1280, 800), chromedp.FullScreenshot(&buf, 100))
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "screenshots", name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fetchStatus posts form from the page with fetch and returns the status.
// The UI has no script and its Content-Security-Policy lets none connect
// anywhere, so the page is reloaded with the policy bypassed for the
// test's own script (a forgery from the signed-in browser), and the
// policy restored for the pages after.
func fetchStatus(t *testing.T, ctx context.Context, path, body string) int {
	t.Helper()
	var code int
	js := `fetch(` + quote(path) + `, {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: ` + body + `, redirect: "manual"}).then(r => r.status)`
	run(t, ctx, "fetch "+path, page.SetBypassCSP(true), chromedp.Reload(),
		chromedp.Evaluate(js, &code, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
			return p.WithAwaitPromise(true)
		}), page.SetBypassCSP(false))
	return code
}

// headerColour reports the header's background colour: the stylesheet's, when
// the policy lets the page load it.
func headerColour(t *testing.T, ctx context.Context) string {
	t.Helper()
	var c string
	run(t, ctx, "header colour", chromedp.Evaluate(`getComputedStyle(document.querySelector("header")).backgroundColor`, &c))
	return c
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func texts(t *testing.T, ctx context.Context, selector string) []string {
	t.Helper()
	var out []string
	run(t, ctx, "read "+selector, chromedp.Evaluate(`Array.from(document.querySelectorAll(`+quote(selector)+`)).map(e => e.textContent.trim())`, &out))
	return out
}

// cells returns the visible text of the data cells of each row of the
// table sel, row by row: what an operator reads on the page.
func cells(t *testing.T, ctx context.Context, sel string) [][]string {
	t.Helper()
	var out [][]string
	js := `Array.from(document.querySelectorAll(` + quote(sel+" tr") + `)).filter(tr => tr.querySelector("td")).map(tr => Array.from(tr.querySelectorAll("td")).map(td => td.innerText.trim().replace(/\s+/g, " ")))`
	run(t, ctx, "read cells of "+sel, chromedp.Evaluate(js, &out))
	return out
}

// wantCells checks the columns cols (by index) of table sel's rows.
func wantCells(t *testing.T, ctx context.Context, page, sel string, cols []int, want [][]string) {
	t.Helper()
	var got [][]string
	for _, row := range cells(t, ctx, sel) {
		var r []string
		for _, c := range cols {
			if c < len(row) {
				r = append(r, row[c])
			} else {
				r = append(r, "<missing>")
			}
		}
		got = append(got, r)
	}
	if !slices.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Errorf("%s: table %s shows\n%q\nwant\n%q", page, sel, got, want)
	}
}

func signInBrowser(t *testing.T, ctx context.Context, base, user, password string) {
	t.Helper()
	run(t, ctx, "sign in as "+user,
		chromedp.Navigate(base+"/admin/"),
		chromedp.WaitVisible("#user", chromedp.ByID),
		chromedp.SendKeys("#user", user, chromedp.ByID),
		chromedp.SendKeys("#password", password, chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#stats", chromedp.ByID),
	)
}

// TestBrowser walks the acceptance scenario in headless Chromium.
func TestBrowser(t *testing.T) {
	ctx := newBrowser(t)
	p := newPortal(t)
	base := p.http.URL
	bg := context.Background()

	signInBrowser(t, ctx, base, "alice", alicePassword)
	// The stylesheet loads under the Content-Security-Policy.
	if got := headerColour(t, ctx); got != "rgb(29, 47, 74)" {
		t.Errorf("header background %q, want rgb(29, 47, 74) from the stylesheet", got)
	}

	// A POST without the CSRF token is refused.
	if code := fetchStatus(t, ctx, "/admin/keys", `"key=nocsrf&limit=1"`); code != 403 {
		t.Errorf("POST without a CSRF token: %d, want 403", code)
	}

	// Create a key with limit 2 and a sticky date.
	run(t, ctx, "create key",
		chromedp.Navigate(base+"/admin/keys"),
		chromedp.Click("#new-key", chromedp.ByID),
		chromedp.WaitVisible("#key-form", chromedp.ByID),
		chromedp.SendKeys("#key", "acme", chromedp.ByID),
		chromedp.SetValue("#limit", "2", chromedp.ByID),
		chromedp.SetValue("#sticky", "2026-11-20", chromedp.ByID),
		chromedp.SetValue("#note", "Acme web fleet", chromedp.ByID),
		chromedp.Click("#save-key", chromedp.ByID),
		chromedp.WaitVisible("#used", chromedp.ByID),
	)
	if got := texts(t, ctx, "#used"); !slices.Equal(got, []string{"0 / 2"}) {
		t.Errorf("new key used/limit = %v, want 0 / 2", got)
	}
	if got := texts(t, ctx, "#sticky"); !slices.Equal(got, []string{"2026-11-20"}) {
		t.Errorf("new key sticky = %v", got)
	}

	// Publish two levels through the Patches page (upload and verify).
	dir := t.TempDir()
	for _, level := range []int{1, 2} {
		data, sig := bundleFor(t, level)
		bpath, spath := filepath.Join(dir, "l"+string(rune('0'+level))+".kcp"), filepath.Join(dir, "l"+string(rune('0'+level))+".kcp.sig")
		os.WriteFile(bpath, data, 0o644)
		os.WriteFile(spath, sig, 0o644)
		run(t, ctx, "upload level",
			chromedp.Navigate(base+"/admin/patches"),
			chromedp.SetUploadFiles("#bundle", []string{bpath}, chromedp.ByID),
			chromedp.SetUploadFiles("#signature", []string{spath}, chromedp.ByID),
			chromedp.Click("#upload", chromedp.ByID),
			chromedp.WaitVisible("#published", chromedp.ByID),
		)
	}

	// Register two servers through the API; a third is refused.
	h1, h2, h3 := p.newHost(t), p.newHost(t), p.newHost(t)
	// A minute apart, so that lists ordered by registration have one order.
	if err := h1.register("acme", "web1.acme.example"); err != nil {
		t.Fatal(err)
	}
	p.advance(time.Minute)
	if err := h2.register("acme", "web2.acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := h3.register("acme", "web3.acme.example"); !errors.Is(err, portalclient.ErrLimitReached) {
		t.Errorf("third registration on a limit-2 key: %v, want ErrLimitReached", err)
	}
	// Another key's server, to filter out; and check-ins for history.
	p.st.AddKey(bg, &store.Key{Key: "other", Note: "staging"})
	p.advance(time.Minute)
	p.st.Register(bg, "other", &store.Server{ID: "other-1", Hostname: "db1.staging.example", IP: "192.0.2.50", Registered: p.now()})
	for i, h := range []*host{h1, h2} {
		h.c.CheckIn(bg, apitype.CheckIn{Hostname: []string{"web1.acme.example", "web2.acme.example"}[i],
			Release: fakekernel.Release, BuildID: fakekernel.BuildID, Level: i + 1, EffectiveRelease: fmt.Sprintf("6.1.0-56.kcare%d-amd64", i+1), Result: "ok", AgentVersion: "1.0.0"})
	}
	run(t, ctx, "key page", chromedp.Navigate(base+"/admin/keys/acme"), chromedp.WaitVisible("#servers", chromedp.ByID))
	ids := texts(t, ctx, "#servers tr.srv td:last-child")
	if len(ids) != 2 || !slices.Contains(ids, h1.c.ServerID) || !slices.Contains(ids, h2.c.ServerID) {
		t.Errorf("key page lists %v, want %s and %s", ids, h1.c.ServerID, h2.c.ServerID)
	}
	// IP, hostname, effective kernel, kernel, level, state, key, feed.
	wantCells(t, ctx, "key page", "#servers", []int{1, 2, 3, 4, 5, 6, 7, 8}, [][]string{
		{"127.0.0.1", "web1.acme.example", "6.1.0-56.kcare1-amd64", "6.1.0-56-amd64", "1 * (L2 available)", "outofdate", "acme", "main"},
		{"127.0.0.1", "web2.acme.example", "6.1.0-56.kcare2-amd64", "6.1.0-56-amd64", "2", "uptodate", "acme", "main"},
	})
	screenshot(t, ctx, "key")

	// Filter servers by key.
	run(t, ctx, "filter servers",
		chromedp.Navigate(base+"/admin/servers"),
		chromedp.WaitVisible("#filters", chromedp.ByID),
		chromedp.SetValue("#filter-key", "acme", chromedp.ByID),
		chromedp.Click("#apply", chromedp.ByID),
	)
	// The old page has a #servers table too: wait for the new page first.
	waitLocation(t, ctx, "key=acme")
	run(t, ctx, "filtered servers", chromedp.WaitVisible("#servers", chromedp.ByID))
	var loc string
	run(t, ctx, "location", chromedp.Location(&loc))
	if !strings.Contains(loc, "key=acme") || len(texts(t, ctx, "#servers tr.srv")) != 2 {
		t.Errorf("servers filtered by key acme: %s shows %d rows, want 2", loc, len(texts(t, ctx, "#servers tr.srv")))
	}
	run(t, ctx, "all servers", chromedp.Navigate(base+"/admin/servers"), chromedp.WaitVisible("#servers", chromedp.ByID))
	if n := len(texts(t, ctx, "#servers tr.srv")); n != 3 {
		t.Errorf("unfiltered servers page shows %d rows, want 3", n)
	}
	wantCells(t, ctx, "servers page", "#servers", []int{1, 2, 5, 6, 7, 8}, [][]string{
		{"127.0.0.1", "web1.acme.example", "1 * (L2 available)", "outofdate", "acme", "main"},
		{"127.0.0.1", "web2.acme.example", "2", "uptodate", "acme", "main"},
		{"192.0.2.50", "db1.staging.example", "0", "inactive", "other", "main"},
	})
	screenshot(t, ctx, "servers")
	run(t, ctx, "server page", chromedp.Navigate(base+"/admin/servers/"+h1.c.ServerID), chromedp.WaitVisible("#history", chromedp.ByID))
	wantCells(t, ctx, "server page", "#server", []int{0}, [][]string{{"web1.acme.example"}, {"127.0.0.1"}, {"outofdate * level 2 is allowed"},
		{"1"}, {"6.1.0-56-amd64"}, {"6.1.0-56.kcare1-amd64"}, {fakekernel.BuildID}, {"acme"}, {"-"}, {"1.0.0, last result ok"},
		{"2026-11-27 10:00"}, {"2026-11-27 10:02"}})
	wantCells(t, ctx, "server page", "#cves", []int{0}, [][]string{{"CVE-2026-1001"}})
	wantCells(t, ctx, "server page", "#history", []int{1, 2, 3}, [][]string{{"1", "6.1.0-56.kcare1-amd64", "ok"}})
	screenshot(t, ctx, "server")

	// Undeploy down to level 2, then enable up to it: the agent's index follows.
	if got := h1.available(t); got != 2 {
		t.Fatalf("available before: %d, want 2", got)
	}
	ps2 := "K20261102_01"
	run(t, ctx, "undeploy down to "+ps2,
		chromedp.Navigate(base+"/admin/feeds/main"),
		chromedp.Click(`tr[data-patchset="`+ps2+`"] button[value="undeploy-downto"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`tr[data-patchset="`+ps2+`"]`, chromedp.ByQuery),
	)
	waitState(t, ctx, ps2, "disabled")
	if got := h1.available(t); got != 1 {
		t.Errorf("available after undeploy down to level 2: %d, want 1", got)
	}
	run(t, ctx, "enable up to "+ps2,
		chromedp.Click(`tr[data-patchset="`+ps2+`"] button[value="enable-upto"]`, chromedp.ByQuery),
	)
	waitState(t, ctx, ps2, "enabled")
	if got := h1.available(t); got != 2 {
		t.Errorf("available after enable up to level 2: %d, want 2", got)
	}
	// Level, patchset, state, channel, released, CVEs.
	wantCells(t, ctx, "feed page", "table.levels", []int{0, 1, 2, 3, 4, 5}, [][]string{
		{"2", "K20261102_01", "enabled", "stable", "2026-11-02 09:00", "1"},
		{"1", "K20261101_01", "enabled", "stable", "2026-11-01 09:00", "1"},
	})
	screenshot(t, ctx, "feed")
	run(t, ctx, "patches", chromedp.Navigate(base+"/admin/patches"), chromedp.WaitVisible("#upload-form", chromedp.ByID))
	// Level, patchset, channel, released, effective kernel, CVEs.
	wantCells(t, ctx, "patches page", "table.levels", []int{0, 1, 2, 3, 4, 5}, [][]string{
		{"2", "K20261102_01", "stable", "2026-11-02 09:00", "6.1.0-56.kcare2-amd64", "CVE-2026-1002"},
		{"1", "K20261101_01", "stable", "2026-11-01 09:00", "6.1.0-56.kcare1-amd64", "CVE-2026-1001"},
	})
	screenshot(t, ctx, "patches")
	run(t, ctx, "keys", chromedp.Navigate(base+"/admin/keys"), chromedp.WaitVisible("#keys", chromedp.ByID))
	// Key, used / limit, feed, sticky, note.
	wantCells(t, ctx, "keys page", "#keys", []int{0, 1, 2, 3, 5}, [][]string{
		{"acme", "2 / 2", "main", "2026-11-20", "Acme web fleet"},
		{"other", "1 / unlimited", "main", "-", "staging"},
	})
	screenshot(t, ctx, "keys")
	run(t, ctx, "overview", chromedp.Navigate(base+"/admin/"), chromedp.WaitVisible("#stats", chromedp.ByID))
	if got, want := texts(t, ctx, "#stats .card"), []string{"3servers total", "2active in the last 48 hours", "1silent",
		"1up to date", "1out of date", "0unsupported kernel", "1inactive"}; !slices.Equal(got, want) {
		t.Errorf("overview cards %q, want %q", got, want)
	}
	wantCells(t, ctx, "overview", "#kernels", []int{0, 1}, [][]string{{"6.1.0-56-amd64", "2"}})
	wantCells(t, ctx, "overview", "#effective", []int{0, 1}, [][]string{{"6.1.0-56.kcare1-amd64", "1"}, {"6.1.0-56.kcare2-amd64", "1"}})
	screenshot(t, ctx, "overview")
	run(t, ctx, "feeds", chromedp.Navigate(base+"/admin/feeds"), chromedp.WaitVisible("#feeds", chromedp.ByID))
	wantCells(t, ctx, "feeds page", "#feeds", []int{0, 1, 2, 3}, [][]string{{"main", "stable", "none", "enabled automatically"}})
	run(t, ctx, "API keys", chromedp.Navigate(base+"/admin/apikeys"), chromedp.WaitVisible("#tokens", chromedp.ByID))
	wantCells(t, ctx, "API keys page", "#tokens", []int{0}, [][]string{{"No API keys."}})
	run(t, ctx, "users", chromedp.Navigate(base+"/admin/users"), chromedp.WaitVisible("#users", chromedp.ByID))
	wantCells(t, ctx, "users page", "#users", []int{0, 1}, [][]string{{"alice", "admin"}, {"bob", "readonly"}})

	// Every change is in the audit log.
	run(t, ctx, "audit log", chromedp.Navigate(base+"/admin/audit"), chromedp.WaitVisible("#audit", chromedp.ByID))
	actions := texts(t, ctx, "#audit td.action")
	for _, want := range []string{"key.add", "level.publish", "server.register", "patchset.undeploy-downto", "patchset.enable-upto"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit log lacks %s: %v", want, actions)
		}
	}
	entries, _ := p.st.AuditQuery(bg, store.AuditFilter{Action: "key.add", Actor: "alice"})
	if len(entries) != 1 || entries[0].IP != "127.0.0.1" || !strings.Contains(entries[0].After, `"limit":2`) || entries[0].Before != "" {
		t.Errorf("key.add audit entry = %+v", entries)
	}
	screenshot(t, ctx, "audit")

	// A read-only user sees no edit controls, and a forged POST is 403.
	run(t, ctx, "sign out", chromedp.Click("#signout", chromedp.ByID), chromedp.WaitVisible("#user", chromedp.ByID))
	signInBrowser(t, ctx, base, "bob", bobPassword)
	for _, page := range []string{"/admin/keys", "/admin/keys/acme", "/admin/feeds/main", "/admin/servers", "/admin/patches", "/admin/users", "/admin/apikeys"} {
		var n int
		run(t, ctx, "read-only "+page, chromedp.Navigate(base+page), chromedp.WaitReady("main", chromedp.ByQuery),
			chromedp.Evaluate(`document.querySelectorAll('form[method=post]:not([action="/admin/logout"]), a[href$="/edit"], a[href$="/delete"], #new-key').length`, &n))
		if n != 0 {
			t.Errorf("read-only %s shows %d edit controls", page, n)
		}
	}
	forged := `"key=forged&limit=0&csrf=" + encodeURIComponent(document.querySelector('input[name=csrf]').value)`
	if code := fetchStatus(t, ctx, "/admin/keys", forged); code != 403 {
		t.Errorf("read-only forged POST: %d, want 403", code)
	}
	if _, err := p.st.Key(bg, "forged"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("forged key exists: %v", err)
	}
}

// waitState waits up to 10s for the feed page to show patchset in state.
func waitState(t *testing.T, ctx context.Context, patchset, state string) {
	t.Helper()
	sel := `tr[data-patchset="` + patchset + `"] .state`
	var got []string
	for range 100 {
		// The page may be navigating after the button's form was posted:
		// ask again rather than fail.
		err := chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll(`+quote(sel)+`)).map(e => e.textContent.trim())`, &got))
		if err == nil && slices.Equal(got, []string{state}) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("waiting up to 10s for %s to be %s: it is %v", patchset, state, got)
}

// waitLocation waits up to 10s for the browser's address to contain want
// and the page to be loaded, asking again while a navigation is under way.
func waitLocation(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var loc, state string
		err := chromedp.Run(ctx, chromedp.Location(&loc), chromedp.Evaluate(`document.readyState`, &state))
		if err == nil && strings.Contains(loc, want) && state == "complete" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waited 10s for the page at an address containing %q", want)
}
