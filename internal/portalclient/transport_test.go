package portalclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/tlscert"
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
	if lic, err := trusted.License(context.Background()); err != nil || lic.ServerID != "s1" {
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

// pinOf computes a pin independently of Pin: the sha256 of the DER
// SubjectPublicKeyInfo, in base64.
func pinOf(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

func TestPin(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	if got, want := tlscert.Pin(srv.Certificate()), pinOf(t, srv.Certificate().PublicKey); got != want {
		t.Errorf("Pin = %s, want %s", got, want)
	}
}

// TestPinnedTransport: a pinned transport reaches a portal whose
// certificate has the pinned key, CA or not, and refuses one with another
// key at the handshake: no request is sent, none retried, and the error
// is ErrPin and ErrTLS.
func TestPinnedTransport(t *testing.T) {
	var conns, requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Write([]byte(`{"type":"key","server_id":"s1"}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	portalPin, otherPin := pinOf(t, srv.Certificate().PublicKey), pinOf(t, &other.PublicKey)

	tests := []struct {
		name string
		o    TransportOptions
		ok   bool
	}{
		{"pinned_self_signed", TransportOptions{Pins: []string{portalPin}}, true},
		{"pinned_and_ca", TransportOptions{Pins: []string{portalPin}, CABundle: ca}, true},
		{"second_pin", TransportOptions{Pins: []string{otherPin, portalPin}}, true},
		{"other_key", TransportOptions{Pins: []string{otherPin}}, false},
		{"other_key_ca_trusted", TransportOptions{Pins: []string{otherPin}, CABundle: ca}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := NewTransport(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			c := &Client{PatchServer: srv.URL, ServerID: "s1", Secret: "x", HTTP: &http.Client{Transport: tr}, Backoff: time.Millisecond}
			conns0, requests0 := conns.Load(), requests.Load()
			lic, err := c.License(context.Background())
			if tt.ok {
				if err != nil || lic.ServerID != "s1" {
					t.Errorf("License = %v, %v", lic, err)
				}
				return
			}
			want := "the portal's TLS certificate is not trusted: its public key does not match PATCH_SERVER_PIN: the certificate's key is " +
				portalPin + ", PATCH_SERVER_PIN allows " + otherPin
			if !errors.Is(err, ErrPin) || !errors.Is(err, ErrTLS) || err.Error() != want {
				t.Errorf("License = %v\nwant %s (ErrPin, ErrTLS)", err, want)
			}
			if n := requests.Load() - requests0; n != 0 {
				t.Errorf("%d requests reached the portal, want none", n)
			}
			if n := conns.Load() - conns0; n != 1 {
				t.Errorf("%d connections, want 1: a pin mismatch is not retried", n)
			}
		})
	}
}

func TestPinRefusesHTTPSProxy(t *testing.T) {
	tr, err := NewTransport(TransportOptions{HTTPSProxy: "https://proxy.example.com:3129", Pins: []string{"sha256//" + strings.Repeat("A", 43) + "="}})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://eportal.example.com/api/v1/license")
	want := "proxy https://proxy.example.com:3129: an https:// proxy cannot be used with PATCH_SERVER_PIN; give it as http:// (the connection to the portal inside it is still TLS)"
	if _, err := tr.Proxy(&http.Request{URL: u}); err == nil || err.Error() != want {
		t.Errorf("proxy = %v, want %q", err, want)
	}
}

// TestPinMatchesOpenSSL: the pin is the one docs/mirroring.md tells an
// administrator to compute with openssl.
func TestPinMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is not installed")
		}
		t.Skip("openssl is not installed")
	}
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	cert := filepath.Join(t.TempDir(), "cert.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	out, err := exec.Command("sh", "-c", `openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64`, "sh", cert).Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	if got, want := tlscert.Pin(srv.Certificate()), "sha256//"+strings.TrimSpace(string(out)); got != want {
		t.Errorf("Pin = %s, openssl says %s", got, want)
	}
}
