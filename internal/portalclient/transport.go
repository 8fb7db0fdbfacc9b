package portalclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"
)

// ErrTLS is a portal whose certificate this host does not trust.
var ErrTLS = errors.New("the portal's TLS certificate is not trusted")

// TransportOptions say how to reach the portal.
type TransportOptions struct {
	// HTTPProxy and HTTPSProxy are kcare.conf's proxies for http:// and
	// https:// portals. Unset, the environment's http_proxy, https_proxy
	// and no_proxy (or their upper-case forms) apply.
	HTTPProxy, HTTPSProxy string
	// CABundle is a PEM file of CAs to trust beside the system's.
	CABundle string
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
			if u, ok := proxies[r.URL.Scheme]; ok {
				return u, nil
			}
			return http.ProxyFromEnvironment(r)
		},
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          4,
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
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

// tlsError recognises a certificate the client does not trust.
func tlsError(err error) error {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host), errors.As(err, &verify):
		return fmt.Errorf("%w (%v); add the portal's CA to CA_BUNDLE in kcare.conf", ErrTLS, err)
	}
	return nil
}
