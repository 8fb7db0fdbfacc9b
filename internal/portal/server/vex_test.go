package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/openvex/go-vex/pkg/vex"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/portal/store"
)

func TestServerVEX(t *testing.T) {
	p := newPortal(t, "sqlite")
	ctx := context.Background()
	p.mustPublish(t, 1, p.now.Add(-10*24*time.Hour))
	p.mustPublish(t, 2, p.now.Add(-5*24*time.Hour))
	p.addKey(t, store.Key{Key: "fleet"})
	h := p.newHost(t)
	h.register(t, "fleet")
	url := p.http.URL + "/admin/api/servers/" + h.c.ServerID + "/vex"

	fetch := func(t *testing.T) *vex.VEX {
		t.Helper()
		resp, body := get(t, url, map[string]string{"X-Api-Key": p.ro})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET vex: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		doc, err := vex.Parse([]byte(body))
		if err != nil {
			t.Fatalf("go-vex cannot parse the portal's document: %v\n%s", err, body)
		}
		if doc.ID == "" || doc.Timestamp == nil || doc.Context != vex.ContextLocator() {
			t.Errorf("document metadata %+v", doc.Metadata)
		}
		for i := range doc.Statements {
			if err := doc.Statements[i].Validate(); err != nil {
				t.Errorf("statement %d: %v", i, err)
			}
		}
		return doc
	}

	// Registered, nothing applied yet: no statements.
	if doc := fetch(t); len(doc.Statements) != 0 {
		t.Errorf("before any level: %d statements, want none", len(doc.Statements))
	}

	if level, err := h.update(t, agent.UpdateOptions{}); err != nil || level != 2 {
		t.Fatalf("update: level %d, %v; want 2", level, err)
	}
	if err := h.c.CheckIn(ctx, apitype.CheckIn{Hostname: "web1", Release: fakekernel.Release, BuildID: fakekernel.BuildID,
		Level: 2, EffectiveRelease: "6.1.0-56.kcare2-amd64", Result: "ok", AgentVersion: "test"}); err != nil {
		t.Fatalf("check-in: %v", err)
	}
	doc := fetch(t)
	const purl = "pkg:deb/debian/linux-image-6.1.0-56-amd64"
	if len(doc.Statements) != 1 {
		t.Fatalf("level 2: %d statements, want 1 (its CVE)", len(doc.Statements))
	}
	st := doc.Statements[0]
	if st.Vulnerability.Name != "CVE-2026-1002" || st.Status != vex.StatusFixed || len(st.Products) != 1 ||
		st.Products[0].ID != purl || st.Products[0].Identifiers[vex.PURL] != purl || st.Timestamp == nil {
		t.Errorf("statement %+v; want CVE-2026-1002 fixed for %s with a timestamp", st, purl)
	}

	// Read-only users may read it; no key, no document; an unknown server is 404.
	if resp, _ := get(t, url, nil); resp.StatusCode != 401 {
		t.Errorf("without X-Api-Key: %d, want 401", resp.StatusCode)
	}
	if resp, _ := get(t, p.http.URL+"/admin/api/servers/nope/vex", map[string]string{"X-Api-Key": p.admin}); resp.StatusCode != 404 {
		t.Errorf("unknown server: %d, want 404", resp.StatusCode)
	}
}
