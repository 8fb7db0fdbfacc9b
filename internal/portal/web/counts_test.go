package web_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/web"
)

// countingKeys counts the store's reads that count each key's servers.
type countingKeys struct {
	store.Store
	counted *atomic.Int64
}

func (c countingKeys) Keys(ctx context.Context) ([]store.Key, error) {
	c.counted.Add(1)
	return c.Store.Keys(ctx)
}

func (c countingKeys) Key(ctx context.Context, key string) (*store.Key, error) {
	c.counted.Add(1)
	return c.Store.Key(ctx, key)
}

// TestServersPageCountsNoKey: the servers page's key filter lists the
// keys without counting their servers (at a million servers, a count of
// every key on every view), and the rows' feeds need no count either.
func TestServersPageCountsNoKey(t *testing.T) {
	var counted atomic.Int64
	u := newTestUI(t, web.Config{}, func(c *core.Config) { c.Store = countingKeys{c.Store, &counted} })
	ctx := context.Background()
	for _, k := range []string{"k-one", "k-two"} {
		if err := u.st.AddKey(ctx, &store.Key{Key: k}); err != nil {
			t.Fatal(err)
		}
		if err := u.st.Register(ctx, k, &store.Server{ID: "srv-" + k, Hostname: "web-" + k, IP: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
	}
	alice, _ := u.session("alice", alicePassword)
	req, _ := http.NewRequest("GET", "/admin/servers", nil)
	req.AddCookie(alice)
	resp := u.do(req, "127.0.0.1")
	b := body(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(b, `<option value="k-one"`) || !strings.Contains(b, `<option value="k-two"`) ||
		!strings.Contains(b, "web-k-one") || !strings.Contains(b, "web-k-two") {
		t.Fatalf("servers page: %d, want 200 listing both keys and servers:\n%s", resp.StatusCode, b)
	}
	if n := counted.Load(); n != 0 {
		t.Errorf("the servers page counted the servers of keys %d times, want 0", n)
	}
}

// TestPatchesPageNoPublisher: a new portal's Patches page says that
// publishing is refused and how to add a publisher key; once one is
// trusted it is listed, with where it comes from, and the notice is gone.
func TestPatchesPageNoPublisher(t *testing.T) {
	u := newTestUI(t, web.Config{}, func(c *core.Config) { c.Publishers, c.PublishersFrom = nil, "" })
	alice, _ := u.session("alice", alicePassword)
	page := func() string {
		req, _ := http.NewRequest("GET", "/admin/patches", nil)
		req.AddCookie(alice)
		resp := u.do(req, "127.0.0.1")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /admin/patches: %d", resp.StatusCode)
		}
		return body(resp)
	}
	notice := `No publisher key is trusted yet, so publishing is refused. On the portal's host, add the publisher's public key (as <span class="mono">gpg --export --armor</span> writes it): <span class="mono">eportal publisher add FILE.pub</span>`
	if b := page(); !strings.Contains(b, notice) {
		t.Errorf("a new portal's Patches page lacks the notice %q:\n%s", notice, b)
	}
	pub, err := publisher.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := u.st.AddPublisherKey(context.Background(), &store.PublisherKey{Fingerprint: publisher.Fingerprint(), Name: "kcare web test publisher", Armored: string(pub)}); err != nil {
		t.Fatal(err)
	}
	b := page()
	if strings.Contains(b, "No publisher key is trusted yet") {
		t.Error("the notice stays once a publisher key is trusted")
	}
	row := `<tr><td class="mono">` + publisher.Fingerprint() + `</td><td>kcare web test publisher</td><td>database</td></tr>`
	if !strings.Contains(b, row) {
		t.Errorf("the Patches page does not list the key as %q:\n%s", row, b)
	}
}

// slowStats is a store whose fleet count waits for a value on release:
// a count of a large fleet.
type slowStats struct {
	store.Store
	release chan struct{}
	counts  *atomic.Int64
}

func (s slowStats) Stats(ctx context.Context, now time.Time, age time.Duration) (store.FleetStats, error) {
	s.counts.Add(1)
	<-s.release
	return s.Store.Stats(ctx, now, age)
}

// TestOverviewCountsInBackground: no view of the overview waits for a
// slow count. The first says the servers are being counted; once the count
// is done, views show it, without counting again, for as long as it is
// kept; then a view starts the next count and shows the last counts
// meanwhile.
func TestOverviewCountsInBackground(t *testing.T) {
	var counts atomic.Int64
	release := make(chan struct{})
	u := newTestUI(t, web.Config{}, func(c *core.Config) { c.Store = slowStats{c.Store, release, &counts} })
	ctx := context.Background()
	if err := u.st.AddKey(ctx, &store.Key{Key: "k-one"}); err != nil {
		t.Fatal(err)
	}
	register := func(id string) {
		if err := u.st.Register(ctx, "k-one", &store.Server{ID: id, Hostname: id, IP: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
	}
	register("srv-1")
	register("srv-2")
	alice, _ := u.session("alice", alicePassword)
	view := func() string {
		t.Helper()
		req, _ := http.NewRequest("GET", "/admin/", nil)
		req.AddCookie(alice)
		resp := u.do(req, "127.0.0.1")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /admin/: %d", resp.StatusCode)
		}
		return body(resp)
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for b := view(); !strings.Contains(b, want); b = view() {
			if time.Now().After(deadline) {
				t.Fatalf("waited 10s for the overview to show %q; it shows:\n%s", want, b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	if b := view(); !strings.Contains(b, `<p id="counting">Counting the servers (since 2026-11-20 09:00 UTC); reload the page in a moment.</p>`) {
		t.Fatalf("the first view, with the count under way: %s", b)
	}
	release <- struct{}{}
	waitFor(`<b id="total">2</b>`)
	u.advance(20 * time.Second)
	if b := view(); !strings.Contains(b, `<b id="total">2</b>`) || counts.Load() != 1 {
		t.Errorf("a view while the counts are kept: %d counts, page:\n%s", counts.Load(), b)
	}

	register("srv-3")
	u.advance(20 * time.Second) // past the 30s the slow count is kept
	b := view()
	if !strings.Contains(b, `<b id="total">2</b>`) || !strings.Contains(b, "; counting again since 2026-11-20 09:00 UTC.</p>") {
		t.Errorf("a view once the counts expired shows the last counts and says it counts again:\n%s", b)
	}
	release <- struct{}{}
	waitFor(`<b id="total">3</b>`)
	if n := counts.Load(); n != 2 {
		t.Errorf("%d counts, want 2", n)
	}
}
