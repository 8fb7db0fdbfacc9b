package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"

	"github.com/kcare/kcare/internal/tlscert"
)

// servingTLS is how eportal serve serves HTTPS: nil config for plain HTTP.
type servingTLS struct {
	config *tls.Config
	pin    string // the public key pin of the certificate served
	caPEM  []byte // the self-signed certificate, for the installer
}

// serveTLS sets up HTTPS: the certificate and key files given, or with
// TLSSelfSigned the data dir's own certificate, made on first start for
// the local names, the listen address and the external URL's host.
func serveTLS(o Options, log func(msg string, args ...any)) (*servingTLS, error) {
	var s servingTLS
	var cert tls.Certificate
	switch {
	case o.TLSSelfSigned:
		ss, err := tlscert.LoadOrMake(o.DataDir, certHosts(o.Listen, o.ExternalURL), o.Now().UTC())
		if err != nil {
			return nil, err
		}
		if ss.Made {
			log("made a self-signed TLS certificate", "cert", ss.CertPath)
		}
		cert, s.caPEM = ss.Cert, ss.CertPEM
	case o.TLSCert != "":
		var err error
		if cert, err = tls.LoadX509KeyPair(o.TLSCert, o.TLSKey); err != nil {
			return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
		}
	default:
		return &s, nil
	}
	s.pin = tlscert.Pin(cert.Leaf)
	s.config = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return &s, nil
}

// certHosts are the names a self-signed certificate is made for, and
// must cover when reused: localhost, this host's name, the listen
// address unless it is a wildcard, and the external URL's host.
func certHosts(listen, externalURL string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	if u, err := url.Parse(externalURL); err == nil && u.Hostname() != "" {
		hosts = append(hosts, u.Hostname())
	}
	return hosts
}
