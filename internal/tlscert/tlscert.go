// Package tlscert makes and reads eportal's self-signed TLS certificate,
// and computes public key pins in curl's --pinnedpubkey format:
// "sha256//" and the base64 of the sha256 of the certificate's DER
// SubjectPublicKeyInfo.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/portal/datadir"
)

// Where a data directory keeps its self-signed certificate.
const (
	Dir      = "tls"
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// Validity is how long a self-signed certificate is valid. Agents trust
// it by its pin or as their CA bundle, so it is made once, not renewed.
const Validity = 10 * 365 * 24 * time.Hour

// ErrNotCovered is a reused certificate that does not name a host the
// portal is to be reached at.
var ErrNotCovered = errors.New("the certificate does not cover the host")

// SelfSigned is a data directory's self-signed certificate.
type SelfSigned struct {
	CertPath, KeyPath string
	CertPEM           []byte
	Cert              tls.Certificate
	Leaf              *x509.Certificate
	Made              bool // made now, not read from an earlier start
}

// LoadOrMake returns the self-signed certificate in dataDir/tls, making
// one (an ECDSA P-256 key, valid from now for Validity, naming hosts) on
// first use. A certificate made earlier is reused as it is, so its pin
// stays; when it does not cover every one of hosts, the error wraps
// ErrNotCovered.
func LoadOrMake(dataDir string, hosts []string, now time.Time) (*SelfSigned, error) {
	dir := filepath.Join(dataDir, Dir)
	s := &SelfSigned{CertPath: filepath.Join(dir, CertFile), KeyPath: filepath.Join(dir, KeyFile)}
	certPEM, err := os.ReadFile(s.CertPath)
	if errors.Is(err, fs.ErrNotExist) {
		if certPEM, err = create(dir, s, hosts, now); err != nil {
			return nil, fmt.Errorf("make a self-signed certificate in %s: %w", dir, err)
		}
		s.Made = true
	} else if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(s.KeyPath)
	if err != nil {
		return nil, err
	}
	if s.Cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", s.CertPath, err)
	}
	s.CertPEM, s.Leaf = certPEM, s.Cert.Leaf
	for _, h := range hosts {
		if err := s.Leaf.VerifyHostname(h); err != nil {
			return nil, fmt.Errorf("%s names %s, not %s: %w (remove %s for a new certificate, whose pin agents then need, or serve another with --tls-cert)",
				s.CertPath, strings.Join(names(s.Leaf), ", "), h, ErrNotCovered, dir)
		}
	}
	return s, nil
}

// create writes a new key and certificate for hosts into dir.
func create(dir string, s *SelfSigned, hosts []string, now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "kcare eportal (self-signed)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The key first: a certificate without its key is never left behind.
	if err := datadir.WriteFile(s.KeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return nil, err
	}
	if err := datadir.WriteFile(s.CertPath, certPEM); err != nil {
		return nil, err
	}
	return certPEM, nil
}

// names lists the host names and addresses c is valid for.
func names(c *x509.Certificate) []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	sort.Strings(out)
	return out
}

// Pin returns c's public key pin in curl's format:
// sha256//BASE64(SHA256(DER SubjectPublicKeyInfo)).
func Pin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

// PinFile returns the pin of the first certificate in the PEM file at
// path.
func PinFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return "", fmt.Errorf("%s: no PEM certificate", path)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return Pin(c), nil
	}
}
