package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/portal/store"
)

// TestRESTMasksKeysForReadOnly: a read-only API token reads the fleet and
// its keys with every activation key masked, as the audit log shows them;
// an admin's token reads them whole.
func TestRESTMasksKeysForReadOnly(t *testing.T) {
	p := newPortal(t, "sqlite")
	const key = "k-rest-mask-4f1c9e2a7b"
	p.addKey(t, store.Key{Key: key, Note: "web"})
	h := p.newHost(t)
	h.register(t, key)
	get := func(path, token string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", p.http.URL+path, nil)
		req.Header.Set("X-Api-Key", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Result []struct {
				Key string `json:"key"`
			} `json:"result"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Result) != 1 {
			t.Fatalf("GET %s: %d %v %+v", path, resp.StatusCode, err, out)
		}
		return out.Result[0].Key
	}
	for _, path := range []string{"/admin/api/keys/", "/admin/api/servers"} {
		if got := get(path, p.admin); got != key {
			t.Errorf("GET %s as admin: key %q, want %q", path, got, key)
		}
		got := get(path, p.ro)
		if got != store.MaskKey(key) || strings.Contains(got, key[4:8]) {
			t.Errorf("GET %s read-only: key %q, want %q", path, got, store.MaskKey(key))
		}
	}
}
