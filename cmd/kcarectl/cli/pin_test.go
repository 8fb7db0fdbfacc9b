package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// spkiPin is curl's --pinnedpubkey form of a DER SubjectPublicKeyInfo:
// sha256// and the base64 of its sha256.
func spkiPin(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

// TestPatchServerPin: with PATCH_SERVER_PIN set, kcarectl talks to the
// portal only if its certificate's public key is pinned: a certificate
// with another key is refused with one clear line before any request is
// sent, even when CA_BUNDLE trusts it; the pinned key alone is enough for
// a self-signed portal.
func TestPatchServerPin(t *testing.T) {
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherDER, err := x509.MarshalPKIXPublicKey(&otherKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	otherPin := spkiPin(otherDER)

	tests := []struct {
		name     string
		ca       bool   // CA_BUNDLE holds the portal's certificate
		pin      string // PATCH_SERVER_PIN; "PORTAL" is the portal's own key's pin
		code     int
		stderr   string // the whole of stderr when the run fails; "PORTAL" as above
		requests bool   // the portal saw requests
	}{
		{"trusted_ca_other_key", true, otherPin, ExitError,
			"kcarectl: register: the portal's TLS certificate is not trusted: its public key does not match PATCH_SERVER_PIN: " +
				"the certificate's key is PORTAL, PATCH_SERVER_PIN allows " + otherPin + "\n", false},
		{"self_signed_other_key", false, otherPin, ExitError,
			"kcarectl: register: the portal's TLS certificate is not trusted: its public key does not match PATCH_SERVER_PIN: " +
				"the certificate's key is PORTAL, PATCH_SERVER_PIN allows " + otherPin + "\n", false},
		{"self_signed_pinned", false, "PORTAL", ExitOK, "", true},
		{"trusted_ca_pinned", true, "PORTAL", ExitOK, "", true},
		{"rotation_two_pins", false, otherPin + ";PORTAL", ExitOK, "", true},
		{"not_a_pin", false, "sha256//not-base64", ExitError,
			"kcarectl: /etc/sysconfig/kcare/kcare.conf: line 2: PATCH_SERVER_PIN=\"sha256//not-base64\": " +
				"want sha256//BASE64 (the base64 of the sha256 of the portal's public key, as curl's --pinnedpubkey), several separated by ;\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, srv, publish := portalEnv(t)
			publish(1, time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
			var requests atomic.Int64
			hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				srv.Handler().ServeHTTP(w, r)
			}))
			hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
			hs.StartTLS()
			t.Cleanup(hs.Close)
			portalPin := spkiPin(hs.Certificate().RawSubjectPublicKeyInfo)
			conf := "PATCH_SERVER=" + hs.URL + "\nPATCH_SERVER_PIN=" + strings.ReplaceAll(tt.pin, "PORTAL", portalPin) + "\n"
			if tt.ca {
				ca := filepath.Join(e.root, "etc/sysconfig/kcare/ca.pem")
				if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o644); err != nil {
					t.Fatal(err)
				}
				conf += "CA_BUNDLE=/etc/sysconfig/kcare/ca.pem\n"
			}
			if err := os.WriteFile(filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf"), []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := e.run("--register", "fleet")
			want := strings.ReplaceAll(tt.stderr, "PORTAL", portalPin)
			if code != tt.code || (tt.code != ExitOK && stderr != want) {
				t.Errorf("--register: exit %d\nstdout: %s\nstderr: %q\nwant exit %d, stderr %q", code, stdout, stderr, tt.code, want)
			}
			if got := requests.Load() > 0; got != tt.requests {
				t.Errorf("the portal saw %d requests; want some: %v", requests.Load(), tt.requests)
			}
		})
	}
}
