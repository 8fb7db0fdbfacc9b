package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/store"
)

// TestBodyLimits: a body over its route's limit is refused with 413 and
// one clear message, whoever sends it; a route that takes no body refuses
// one.
func TestBodyLimits(t *testing.T) {
	p := newPortal(t, "sqlite")
	p.addKey(t, store.Key{Key: "fleet"})
	h := p.newHost(t)
	h.register(t, "fleet")
	form := url.Values{"key": {"fleet"}, "hostname": {"web1"}, "pad": {strings.Repeat("x", 100<<10)}}.Encode()
	big := `{"key":"k-big","note":"` + strings.Repeat("x", 2<<20) + `"}`
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		body               string
	}{
		{"register", "POST", "/admin/api/register", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, form},
		{"checkin", "POST", "/api/v1/checkin", map[string]string{"Authorization": basic(h.c.ServerID, h.c.Secret)},
			`{"hostname":"web1","result":"` + strings.Repeat("x", 100<<10) + `"}`},
		{"rest_add_key", "POST", "/admin/api/keys/", map[string]string{"X-Api-Key": p.admin}, big},
		{"rest_get_with_body", "GET", "/admin/api/servers", map[string]string{"X-Api-Key": p.admin}, "{}"},
		{"license_with_body", "GET", "/api/v1/license", map[string]string{"Authorization": basic(h.c.ServerID, h.c.Secret)}, "{}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, p.http.URL+tt.path, strings.NewReader(tt.body))
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 413 || string(b) != `{"error":"request body too large"}`+"\n" {
				t.Errorf("%s %s with a %d-byte body: %d %s; want 413 request body too large", tt.method, tt.path, len(tt.body), resp.StatusCode, b)
			}
		})
	}
	// Under the limit, the same requests work.
	if err := h.c.CheckIn(context.Background(), checkInOf("web1")); err != nil {
		t.Errorf("check-in under the limit: %v", err)
	}
	b, _ := json.Marshal(map[string]any{"key": "k-small", "note": "web"})
	req, _ := http.NewRequest("POST", p.http.URL+"/admin/api/keys/", bytes.NewReader(b))
	req.Header.Set("X-Api-Key", p.admin)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Errorf("add key under the limit: %v %v", resp.Status, err)
	}
}

// basic is an HTTP basic Authorization header value.
func basic(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}

// checkInOf is a well-formed check-in of the fake kernel at level 1.
func checkInOf(hostname string) apitype.CheckIn {
	return apitype.CheckIn{Hostname: hostname, Release: fakekernel.Release, BuildID: fakekernel.BuildID,
		KernelID: kernel.KernelID(fakekernel.Version), Level: 1, EffectiveRelease: "6.1.0-56.kcare1-amd64", Result: "ok", AgentVersion: "0.1.0"}
}
