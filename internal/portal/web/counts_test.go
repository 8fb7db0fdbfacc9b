package web_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

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
