package portalclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/tlscert"
)

// ErrTLS is a portal whose certificate this host does not trust.
var ErrTLS = errors.New("the portal's TLS certificate is not trusted")

// ErrPin is a portal certificate whose public key is not one of the
// pins: a case of ErrTLS (an error wrapping ErrPin wraps ErrTLS too).
var ErrPin = errors.New("its public key does not match PATCH_SERVER_PIN")

// TransportOptions say how to reach the portal.
type TransportOptions struct {
	// HTTPProxy and HTTPSProxy are kcare.conf's proxies for http:// and
	// https:// portals. Unset, the environment's http_proxy, https_proxy
	// and no_proxy (or their upper-case forms) apply.
	HTTPProxy, HTTPSProxy string
	// CABundle is a PEM file of CAs to trust beside the system's.
	CABundle string
	// Pins, when set, are the public keys a portal's certificate may
	// have, each as Pin returns it (config.ParsePins checks the form).
	// With pins and no CABundle, the pinned key alone is trusted: no CA,
	// name or date is checked, as curl -k --pinnedpubkey, so that a
	// self-signed portal needs nothing but its pin. With both, the
	// certificate must pass both.
	Pins []string
}

// pinError is a certificate whose key matches no pin.
type pinError struct {
	got  string
	pins []string
}

func (e *pinError) Error() string {
	return fmt.Sprintf("%v: %v: the certificate's key is %s, PATCH_SERVER_PIN allows %s", ErrTLS, ErrPin, e.got, strings.Join(e.pins, ";"))
}

func (e *pinError) Unwrap() []error { return []error{ErrTLS, ErrPin} }

// verifyPin returns a tls.Config.VerifyConnection that accepts a
// connection only if the server's own certificate has a pinned key.
func verifyPin(pins []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &pinError{got: "none", pins: pins}
		}
		got := tlscert.Pin(cs.PeerCertificates[0])
		if slices.Contains(pins, got) {
			return nil
		}
		return &pinError{got: got, pins: pins}
	}
}

// NewTransport returns an HTTP transport for o.
func NewTransport(o TransportOptions) (*http.Transport, error) {
	proxies := map[string]*url.URL{}
	for scheme, p := range map[string]string{"http": o.HTTPProxy, "https": o.HTTPSProxy} {
		if p == "" {
			continue
		}
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("bad %s proxy %q", scheme, p)
		}
		proxies[scheme] = u
	}
	t := &http.Transport{
		Proxy: func(r *http.Request) (*url.URL, error) {
			u, ok := proxies[r.URL.Scheme]
			if !ok {
				var err error
				if u, err = http.ProxyFromEnvironment(r); err != nil {
					return nil, err
				}
			}
			if u != nil && u.Scheme == "https" && len(o.Pins) > 0 {
				// The pins would be asked of the proxy's certificate too.
				return nil, fmt.Errorf("proxy %s: an https:// proxy cannot be used with PATCH_SERVER_PIN; give it as http:// (the connection to the portal inside it is still TLS)", u.Redacted())
			}
			return u, nil
		},
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          4,
	}
	if len(o.Pins) > 0 {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, VerifyConnection: verifyPin(o.Pins),
			InsecureSkipVerify: o.CABundle == ""} // the pin is the trust; see TransportOptions.Pins
	}
	if o.CABundle != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(o.CABundle)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s: no PEM certificates in it", o.CABundle)
		}
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t, nil
}

// tlsError recognises a certificate the client does not trust.
func tlsError(err error) error {
	var pin *pinError
	if errors.As(err, &pin) {
		return pin
	}
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host), errors.As(err, &verify):
		return fmt.Errorf("%w (%v); add the portal's CA to CA_BUNDLE, or its key's pin to PATCH_SERVER_PIN, in kcare.conf", ErrTLS, err)
	}
	return nil
}
