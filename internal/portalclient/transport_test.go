package portalclient

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTLSTrust(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"type":"key","server_id":"s1"}`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)

	untrusted := &Client{PatchServer: srv.URL, ServerID: "s1", Secret: "x", Backoff: time.Millisecond}
	if _, err := untrusted.License(context.Background()); !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "CA_BUNDLE") {
		t.Errorf("License from an untrusted portal = %v, want ErrTLS naming CA_BUNDLE", err)
	}
	tr, err := NewTransport(TransportOptions{CABundle: ca})
	if err != nil {
		t.Fatal(err)
	}
	trusted := &Client{PatchServer: srv.URL, ServerID: "s1", Secret: "x", HTTP: &http.Client{Transport: tr}}
	if lic, err := trusted.License(context.Background()); err != nil || lic["server_id"] != "s1" {
		t.Errorf("License with the CA trusted = %v, %v", lic, err)
	}
	if _, err := NewTransport(TransportOptions{CABundle: filepath.Join(t.TempDir(), "none.pem")}); err == nil {
		t.Error("NewTransport with a missing CA bundle succeeded")
	}
}

func TestProxyChoice(t *testing.T) {
	tr, err := NewTransport(TransportOptions{HTTPProxy: "http://proxy.example.com:3128", HTTPSProxy: "http://sproxy.example.com:3129"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ target, want string }{
		{"http://eportal.example.com/api/v1/license", "http://proxy.example.com:3128"},
		{"https://eportal.example.com/api/v1/license", "http://sproxy.example.com:3129"},
		{"http://127.0.0.2:8080/healthz", "http://proxy.example.com:3128"},
	} {
		u, _ := url.Parse(tt.target)
		got, err := tr.Proxy(&http.Request{URL: u})
		if err != nil || got == nil || got.String() != tt.want {
			t.Errorf("proxy for %s = %v, %v; want %s", tt.target, got, err, tt.want)
		}
	}
}
