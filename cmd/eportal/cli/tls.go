package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"

	"github.com/kcare/kcare/internal/tlscert"
)

// servingTLS is how eportal serve serves HTTPS: nil config for plain HTTP.
type servingTLS struct {
	config *tls.Config
	pin    string // the public key pin of the certificate served
	caPEM  []byte // the self-signed certificate, for the installer
}

// serveTLS sets up HTTPS for eportal serve: the certificate and key
// files given, or with selfSigned the data dir's own certificate, made on
// first start for the local names, the listen address and the external
// URL's host.
func serveTLS(data, listen, externalURL, certFile, keyFile string, selfSigned bool, log func(msg string, args ...any)) (*servingTLS, error) {
	var s servingTLS
	var cert tls.Certificate
	switch {
	case selfSigned:
		ss, err := tlscert.LoadOrMake(data, certHosts(listen, externalURL), now())
		if err != nil {
			return nil, err
		}
		if ss.Made {
			log("made a self-signed TLS certificate", "cert", ss.CertPath)
		}
		cert, s.caPEM = ss.Cert, ss.CertPEM
	case certFile != "":
		var err error
		if cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
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

// runTLSPin prints the public key pin of the data dir's self-signed
// certificate, or of --cert FILE, in curl's --pinnedpubkey format.
func runTLSPin(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tls-pin", flag.ContinueOnError)
	data := fs.String("data", DefaultDataDir, "data `DIR` whose self-signed certificate (DIR/tls/cert.pem) to pin")
	cert := fs.String("cert", "", "pin this certificate `FILE` (PEM) instead")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	path := *cert
	if path == "" {
		path = filepath.Join(*data, tlscert.Dir, tlscert.CertFile)
	}
	pin, err := tlscert.PinFile(path)
	if errors.Is(err, os.ErrNotExist) && *cert == "" {
		return fmt.Errorf("no self-signed certificate in %s (eportal serve --tls-self-signed makes one; --cert FILE pins another)", filepath.Dir(path))
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, pin)
	return nil
}
