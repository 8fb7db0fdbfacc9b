package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/kcare/kcare/internal/portal/core"
)

// The agent installer. GET /installer returns a POSIX sh script that
// installs the newest agent package this portal holds, trusts this
// portal's keys, points kcare.conf at it and, given a key, registers:
//
//	curl -fsS https://PORTAL/installer | sh -s -- KEY
//
// PORTAL is the portal's external URL, set by its administrator
// (WithInstaller): never the request's Host header, which whoever sends
// the request chooses. Without one the installer refuses.
//
// The packages are the files an administrator places in the packages
// directory beside the data directory's blobs (DATA/packages), served by
// GET /packages/{name}. The script names one by its sha256 and checks it
// before installing. The keys it installs are the portal's index key and
// the publisher keys in DATA/publishers.

// installerPackagePrefix and installerPackageSuffix select the agent
// packages the installer offers: kcare_VERSION_amd64.deb.
const (
	installerPackagePrefix = "kcare_"
	installerPackageSuffix = "_amd64.deb"
)

// packageNameRE is what a served package's file name may be.
var packageNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]*\.(deb|rpm)$`)

// keyNameRE is what a publisher key's file name must be to go into the
// installer.
var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]*\.(pub|asc)$`)

// hostRE is what an external URL's host and port may be.
var hostRE = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)

// urlPathRE is what an external URL's path may be.
var urlPathRE = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)*/?$`)

// InstallerOptions say how the installer names this portal.
type InstallerOptions struct {
	// ExternalURL is the portal's address as agents reach it, e.g.
	// https://eportal.example.com:8443; the script points them there.
	// Empty: /installer refuses, saying how to set it.
	ExternalURL string
	// CACert is the portal's self-signed certificate (PEM), when it
	// serves one: the script fetches with it and makes it the agent's
	// CA_BUNDLE. Pin is its public key pin, for the script's comments.
	CACert []byte
	Pin    string
}

// ParseExternalURL checks u, a portal's external URL: http or https, a
// host name or IP address and an optional port and path, nothing else.
// It returns u without a trailing slash.
func ParseExternalURL(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("external URL %q: %w", u, err)
	}
	switch {
	case p.Scheme != "http" && p.Scheme != "https":
		return "", fmt.Errorf("external URL %q: want http:// or https://", u)
	case p.User != nil || p.RawQuery != "" || p.Fragment != "" || p.Opaque != "" || strings.HasSuffix(u, "?") || strings.HasSuffix(u, "#"):
		return "", fmt.Errorf("external URL %q: want no user, query or fragment", u)
	case !hostRE.MatchString(p.Host):
		return "", fmt.Errorf("external URL %q: bad host %q", u, p.Host)
	case !urlPathRE.MatchString(p.Path) || p.RawPath != "":
		return "", fmt.Errorf("external URL %q: bad path %q", u, p.Path)
	}
	return strings.TrimSuffix(p.Scheme+"://"+p.Host+p.Path, "/"), nil
}

type installerOptionsKey struct{}

// WithInstaller returns h, the portal's handler, with its installer set
// up by o.
func WithInstaller(h http.Handler, o InstallerOptions) (http.Handler, error) {
	if o.ExternalURL != "" {
		u, err := ParseExternalURL(o.ExternalURL)
		if err != nil {
			return nil, err
		}
		o.ExternalURL = u
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/installer" {
			r = r.WithContext(context.WithValue(r.Context(), installerOptionsKey{}, o))
		}
		h.ServeHTTP(w, r)
	}), nil
}

// installerOptions returns the options WithInstaller gave r.
func installerOptions(r *http.Request) InstallerOptions {
	o, _ := r.Context().Value(installerOptionsKey{}).(InstallerOptions)
	return o
}

// installerRoutes adds the installer's routes through h.
func (s *Server) installerRoutes(h func(pattern string, f func(w http.ResponseWriter, r *http.Request) error)) {
	h("GET /installer", s.installer)
	h("GET /packages/{name}", s.packageFile)
}

// dataDir is the portal's data directory.
func (s *Server) dataDir() string { return s.core.DataDir() }

func (s *Server) packagesDir() string { return filepath.Join(s.dataDir(), "packages") }

// installerData is what the script template needs.
type installerData struct {
	Portal    string // the portal's external URL
	PlainHTTP bool   // Portal is http://
	Package   string // file name under /packages/
	SHA256    string
	Keys      []installerKey
	CACert    string // the portal's self-signed certificate, PEM, or ""
	Pin       string // its pin
}

type installerKey struct {
	Name string // file name in the keyring directory
	Text string // ASCII-armored public key
}

func (s *Server) installer(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/x-shellscript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	o := installerOptions(r)
	if o.ExternalURL == "" {
		// Whatever the client does with the answer, it is a script that
		// says what went wrong.
		s.cfg.Log.Warn("installer requested, but the portal has no external URL (eportal serve --external-url)")
		w.WriteHeader(http.StatusServiceUnavailable)
		return writeRefusal(w, "this portal does not know its own address: its administrator starts eportal serve with --external-url https://HOST[:PORT]")
	}
	portal := o.ExternalURL
	pkg, err := newestAgentPackage(s.packagesDir())
	if err != nil {
		return err
	}
	if pkg == "" {
		s.cfg.Log.Warn("installer requested, but the portal holds no agent package", "dir", s.packagesDir())
		w.WriteHeader(http.StatusServiceUnavailable)
		return writeRefusal(w, "this portal has no agent package to install (its administrator places kcare_VERSION_amd64.deb in the data directory's packages/)")
	}
	sum, err := packageSHA256(filepath.Join(s.packagesDir(), pkg))
	if err != nil {
		return fmt.Errorf("installer: %w", err)
	}
	keys, err := s.installerKeys(r.Context())
	if err != nil {
		return fmt.Errorf("installer: %w", err)
	}
	var b bytes.Buffer
	data := installerData{Portal: portal, PlainHTTP: strings.HasPrefix(portal, "http://"), Package: pkg, SHA256: sum, Keys: keys}
	if cert := strings.TrimSpace(string(o.CACert)); cert != "" && !data.PlainHTTP {
		// Only a certificate goes into the script, never the heredoc's
		// terminator.
		if !strings.HasPrefix(cert, "-----BEGIN CERTIFICATE-----") || strings.Contains(cert, "KCARE_CERT_END") {
			return fmt.Errorf("installer: the portal's certificate is not a PEM certificate")
		}
		data.CACert, data.Pin = cert, o.Pin
	}
	if err := installerTemplate.Execute(&b, data); err != nil {
		return fmt.Errorf("installer: %w", err)
	}
	_, err = w.Write(b.Bytes())
	return err
}

// writeRefusal writes a script that prints msg and fails.
func writeRefusal(w io.Writer, msg string) error {
	_, err := fmt.Fprintf(w, "#!/bin/sh\necho %s >&2\nexit 1\n", shellQuote("kcare installer: "+msg))
	return err
}

// newestAgentPackage returns the name of the newest kcare_*_amd64.deb in
// dir, or "" when there is none.
func newestAgentPackage(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return "", nil
		}
		return "", fmt.Errorf("read packages: %w", err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && packageNameRE.MatchString(n) &&
			strings.HasPrefix(n, installerPackagePrefix) && strings.HasSuffix(n, installerPackageSuffix) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	version := func(n string) string {
		return strings.TrimSuffix(strings.TrimPrefix(n, installerPackagePrefix), installerPackageSuffix)
	}
	sort.Slice(names, func(i, j int) bool { return versionLess(version(names[i]), version(names[j])) })
	return names[len(names)-1], nil
}

// versionLess reports whether version a sorts before b, comparing runs of
// digits as numbers and everything else as text: 0.9.0-1 < 0.10.0-1.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, ra := splitRun(a)
		db, rb := splitRun(b)
		if da != db {
			if isDigits(da) && isDigits(db) {
				na, nb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
				if len(na) != len(nb) {
					return len(na) < len(nb)
				}
				return na < nb
			}
			return da < db
		}
		a, b = ra, rb
	}
	return len(a) < len(b)
}

// splitRun returns s's first run of digits or of non-digits, and the rest.
func splitRun(s string) (string, string) {
	digit := s[0] >= '0' && s[0] <= '9'
	i := 1
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digit {
		i++
	}
	return s[:i], s[i:]
}

func isDigits(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

// packageSums caches package digests by path, size and modification time.
var packageSums sync.Map // path -> packageSum

type packageSum struct {
	size int64
	mod  time.Time
	hex  string
}

func packageSHA256(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if v, ok := packageSums.Load(path); ok {
		if c := v.(packageSum); c.size == fi.Size() && c.mod.Equal(fi.ModTime()) {
			return c.hex, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	packageSums.Store(path, packageSum{size: fi.Size(), mod: fi.ModTime(), hex: sum})
	return sum, nil
}

// installerKeys returns the portal's index key and the publisher keys, in
// DATA/publishers and in the database (eportal publisher add), armored.
func (s *Server) installerKeys(ctx context.Context) ([]installerKey, error) {
	pub, err := s.core.IndexPublicKey()
	if err != nil {
		return nil, fmt.Errorf("portal key: %w", err)
	}
	keys := []installerKey{{Name: "portal.pub", Text: strings.TrimSpace(string(pub))}}
	dir := filepath.Join(s.dataDir(), "publishers")
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("publisher keys: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !keyNameRE.MatchString(n) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("publisher keys: %w", err)
		}
		text := strings.TrimSpace(string(data))
		// Only armored keys go into the script, never the heredoc's
		// terminator.
		if !strings.HasPrefix(text, "-----BEGIN PGP PUBLIC KEY BLOCK-----") || strings.Contains(text, "KCARE_KEY_END") {
			continue
		}
		if n == "portal.pub" {
			n = "publisher-portal.pub"
		}
		keys = append(keys, installerKey{Name: n, Text: text})
	}
	stored, err := s.core.PublisherKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("publisher keys: %w", err)
	}
	for _, k := range stored {
		text := strings.TrimSpace(string(k.Armored))
		if k.Source != core.SourceDatabase || strings.Contains(text, "KCARE_KEY_END") {
			continue
		}
		keys = append(keys, installerKey{Name: "publisher-" + k.Fingerprint[max(0, len(k.Fingerprint)-16):] + ".pub", Text: text})
	}
	return keys, nil
}

// packageFile serves a file of DATA/packages.
func (s *Server) packageFile(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if !packageNameRE.MatchString(name) {
		return errorf(http.StatusNotFound, "not found")
	}
	f, err := os.Open(filepath.Join(s.packagesDir(), name))
	if err != nil {
		if os.IsNotExist(err) {
			return errorf(http.StatusNotFound, "not found")
		}
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errorf(http.StatusNotFound, "not found")
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, fi.ModTime(), f)
	return nil
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var installerTemplate = template.Must(template.New("installer").Funcs(template.FuncMap{"q": shellQuote}).Parse(installerScript))

// installerScript is the installer, POSIX sh. KCARE_INSTALLER_OS_RELEASE
// replaces /etc/os-release for the installer's own tests.
const installerScript = `#!/bin/sh
# kcare installer, served by the kcare portal at {{.Portal}}.
#
{{- if .CACert}}
#   curl -fsS -k --pinnedpubkey {{.Pin}} {{.Portal}}/installer | sh -s -- [ACTIVATION_KEY]
{{- else}}
#   curl -fsS {{.Portal}}/installer | sh -s -- [ACTIVATION_KEY]
{{- end}}
#
# Installs the kcare agent package from this portal (checking its
# sha256), trusts the portal's keys, points PATCH_SERVER and
# REGISTRATION_URL at the portal and, given an activation key, registers.
# KCARE_SCANNER_USER=USER also enables the scanner interface for USER.
# Supported: Debian and Ubuntu on x86_64 with systemd.
set -eu

PORTAL={{q .Portal}}
PACKAGE={{q .Package}}
SHA256={{q .SHA256}}
CONF_DIR=/etc/sysconfig/kcare
CONF=$CONF_DIR/kcare.conf
OS_RELEASE=${KCARE_INSTALLER_OS_RELEASE:-/etc/os-release}
SUPPORTED="kcare installs on Debian or Ubuntu, x86_64, with systemd"

die() {
	echo "kcare installer: $*" >&2
	exit 1
}

say() {
	echo "kcare installer: $*" >&2
}
{{- if .PlainHTTP}}

say "warning: $PORTAL is plain http: the agent's secret and its updates cross the network unencrypted; ask the portal's administrator for HTTPS (eportal serve --tls-self-signed)"
{{- end}}

# The system.
[ -r "$OS_RELEASE" ] || die "cannot read $OS_RELEASE: unsupported system ($SUPPORTED)"
os_id=$(sed -n 's/^ID=//p' "$OS_RELEASE" | tr -d "\"'")
os_like=$(sed -n 's/^ID_LIKE=//p' "$OS_RELEASE" | tr -d "\"'")
os_name=$(sed -n 's/^PRETTY_NAME=//p' "$OS_RELEASE" | tr -d "\"'")
case " $os_id $os_like " in
*" debian "* | *" ubuntu "*) ;;
*) die "unsupported system: ${os_name:-${os_id:-unknown}} ($SUPPORTED)" ;;
esac
arch=$(uname -m)
[ "$arch" = x86_64 ] || die "unsupported architecture: $arch ($SUPPORTED)"
command -v dpkg >/dev/null 2>&1 || die "dpkg not found ($SUPPORTED)"
[ -d /run/systemd/system ] || die "systemd is not running ($SUPPORTED)"
[ "$(id -u)" = 0 ] || die "run me as root"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
TLS_CA=
{{- if .CACert}}

# The portal's certificate (self-signed, pin {{.Pin}}): the
# downloads here trust it, and so does the agent, as its CA_BUNDLE.
CA_BUNDLE=$CONF_DIR/portal-ca.pem
TLS_CA=$tmp/portal-ca.pem
cat > "$TLS_CA" <<'KCARE_CERT_END'
{{.CACert}}
KCARE_CERT_END
{{- end}}

if command -v curl >/dev/null 2>&1; then
	fetch() { curl -fsS --retry 3 ${TLS_CA:+--cacert "$TLS_CA"} -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
	fetch() { wget -q ${TLS_CA:+--ca-certificate="$TLS_CA"} -O "$2" "$1"; }
else
	die "neither curl nor wget found"
fi

# The package, checked.
say "downloading $PACKAGE from $PORTAL"
fetch "$PORTAL/packages/$PACKAGE" "$tmp/$PACKAGE" || die "download $PORTAL/packages/$PACKAGE failed"
got=$(sha256sum "$tmp/$PACKAGE" | cut -d' ' -f1)
[ "$got" = "$SHA256" ] || die "$PACKAGE: sha256 $got, want $SHA256; not installing"
say "installing $PACKAGE"
DEBIAN_FRONTEND=noninteractive dpkg --force-confold -i "$tmp/$PACKAGE" >&2 || die "dpkg -i $PACKAGE failed"

# The portal's keys.
mkdir -p "$CONF_DIR/keys"
{{- range .Keys}}
cat > "$CONF_DIR/keys/"{{q .Name}} <<'KCARE_KEY_END'
{{.Text}}
KCARE_KEY_END
chmod 0644 "$CONF_DIR/keys/"{{q .Name}}
{{- end}}

# kcare.conf: KEY=VALUE replaces the key's lines, commented or not.
set_conf() {
	[ -f "$CONF" ] || : > "$CONF"
	sed -i "/^#*[[:space:]]*$1=/d" "$CONF"
	printf '%s=%s\n' "$1" "$2" >> "$CONF"
}
set_conf PATCH_SERVER "$PORTAL"
set_conf REGISTRATION_URL "$PORTAL/admin/api"
{{- if .CACert}}
cp "$TLS_CA" "$CA_BUNDLE"
chmod 0644 "$CA_BUNDLE"
set_conf CA_BUNDLE "$CA_BUNDLE"
say "CA_BUNDLE=$CA_BUNDLE in $CONF: the agent trusts the portal's certificate"
{{- end}}
say "PATCH_SERVER=$PORTAL in $CONF"

if [ -n "${KCARE_SCANNER_USER:-}" ]; then
	kcarectl --scanner-interface enable "$KCARE_SCANNER_USER" || die "enabling the scanner interface for $KCARE_SCANNER_USER failed"
fi

if [ $# -gt 0 ] && [ -n "$1" ]; then
	say "registering with $PORTAL"
	kcarectl --register "$1" || die "kcarectl --register failed"
else
	say "installed; register with: kcarectl --register KEY"
fi
`
