package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/portal/store"
)

// auditKey is an activation key that must never be whole in the audit log.
const auditKey = "k-audit-5e0c9b7d31a2f6"

// assertNoKeyInAudit fails for any audit entry holding key, or a long
// piece of it, in any field.
func assertNoKeyInAudit(t *testing.T, st store.Store, key string) []store.AuditEntry {
	t.Helper()
	entries, err := st.AuditLog(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		for name, v := range map[string]string{"object": e.Object, "detail": e.Detail, "before": e.Before, "after": e.After, "actor": e.Actor} {
			for _, piece := range []string{key, key[4:], key[len(key)-8:]} {
				if strings.Contains(v, piece) {
					t.Errorf("audit %s: %s holds %q of the key: %s", e.Action, name, piece, v)
				}
			}
		}
	}
	return entries
}

// TestAuditMasksKeys: adding a key over REST, registering a server with it
// and deleting it leave audit entries that name the key masked, never
// whole, in the object, the detail, and before and after.
func TestAuditMasksKeys(t *testing.T) {
	p := newPortal(t, "sqlite")
	b, _ := json.Marshal(map[string]any{"key": auditKey, "note": "audit test", "server_limit": 5})
	if code, body := do(t, http.DefaultClient, "POST", p.http.URL+"/admin/api/keys/", map[string]string{"X-Api-Key": p.admin}, string(b)); code != 201 {
		t.Fatalf("add key: %d %s", code, body)
	}
	h := p.newHost(t)
	h.register(t, auditKey)
	if code, body := do(t, http.DefaultClient, "DELETE", p.http.URL+"/admin/api/keys/"+auditKey, map[string]string{"X-Api-Key": p.admin}, ""); code != 200 {
		t.Fatalf("delete key: %d %s", code, body)
	}
	entries := assertNoKeyInAudit(t, p.st, auditKey)
	actions := map[string]store.AuditEntry{}
	for _, e := range entries {
		actions[e.Action] = e
	}
	for _, a := range []string{"key.add", "server.register", "key.delete"} {
		if _, ok := actions[a]; !ok {
			t.Errorf("no %s audit entry among %d", a, len(entries))
		}
	}
	if e := actions["key.add"]; e.Object != "k-au…" || !strings.Contains(e.After, `"key":"k-au…"`) || !strings.Contains(e.After, `"note":"audit test"`) {
		t.Errorf("key.add: object %q, after %s; want the key shown as k-au… beside its settings", e.Object, e.After)
	}
}
