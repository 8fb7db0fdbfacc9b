package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/storetest"
)

// testExternalURL is the external URL of installerPortal's portal.
const testExternalURL = "https://eportal.example.com:8443"

// installerPortal serves a portal whose data directory is data, with its
// installer set up by o, if any.
func installerPortal(t *testing.T, o ...server.InstallerOptions) (data string, srv *httptest.Server) {
	t.Helper()
	data = t.TempDir()
	s := server.New(server.Config{Core: core.New(core.Config{Store: storetest.Open(t, "sqlite"), Blobs: blobs.Store{Dir: filepath.Join(data, "blobs")}, IndexKey: portalKey, Publishers: ring(t, publisher)})})
	h := s.Handler()
	if len(o) > 0 {
		var err error
		if h, err = server.WithInstaller(h, o[0]); err != nil {
			t.Fatal(err)
		}
	}
	srv = httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return data, srv
}

// getWithHost gets url naming host in the Host header, with headers.
func getWithHost(t *testing.T, url, host string, headers ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func installerGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// runScript runs script with sh and args, and env added.
func runScript(t *testing.T, script string, env []string, args ...string) (exit int, stderr string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "installer.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, errb.String()
}

func TestInstallerWithoutPackage(t *testing.T) {
	_, srv := installerPortal(t, server.InstallerOptions{ExternalURL: testExternalURL})
	code, body := installerGet(t, srv.URL+"/installer")
	if code != http.StatusServiceUnavailable {
		t.Errorf("GET /installer with no package: %d, want 503", code)
	}
	exit, stderr := runScript(t, body, nil)
	if exit != 1 || !strings.Contains(stderr, "no agent package") {
		t.Errorf("the refusal script: exit %d, stderr %q; want 1 and \"no agent package\"", exit, stderr)
	}
}

func TestInstaller(t *testing.T) {
	data, srv := installerPortal(t, server.InstallerOptions{ExternalURL: testExternalURL + "/"})
	pkgs := filepath.Join(data, "packages")
	os.MkdirAll(pkgs, 0o755)
	os.MkdirAll(filepath.Join(data, "publishers"), 0o755)
	pub, _ := publisher.PublicKey()
	os.WriteFile(filepath.Join(data, "publishers", "publisher.pub"), pub, 0o644)
	newest := []byte("the 0.10.0 package")
	for name, body := range map[string][]byte{
		"kcare_0.9.0-1_amd64.deb":    []byte("the 0.9.0 package"),
		"kcare_0.10.0-1_amd64.deb":   newest,
		"eportal_0.11.0-1_amd64.deb": []byte("not the agent"),
		"kcare-0.12.0-1.x86_64.rpm":  []byte("not for dpkg"),
	} {
		if err := os.WriteFile(filepath.Join(pkgs, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, script := installerGet(t, srv.URL+"/installer")
	if code != http.StatusOK {
		t.Fatalf("GET /installer: %d\n%s", code, script)
	}
	sum := sha256.Sum256(newest)
	portalPub, _ := portalKey.PublicKey()
	for _, want := range []string{
		"PORTAL='" + testExternalURL + "'",
		"PACKAGE='kcare_0.10.0-1_amd64.deb'",
		"SHA256='" + hex.EncodeToString(sum[:]) + "'",
		`"$CONF_DIR/keys/"'portal.pub'`,
		`"$CONF_DIR/keys/"'publisher.pub'`,
		strings.TrimSpace(string(portalPub)),
		strings.TrimSpace(string(pub)),
	} {
		if !strings.Contains(script, want) {
			t.Errorf("installer lacks %q", want)
		}
	}
	if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v\n%s", err, out)
	}

	t.Run("refuses_unsupported_system", func(t *testing.T) {
		osRelease := filepath.Join(t.TempDir(), "os-release")
		os.WriteFile(osRelease, []byte("NAME=\"CentOS Stream\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\nPRETTY_NAME=\"CentOS Stream 9\"\n"), 0o644)
		exit, stderr := runScript(t, script, []string{"KCARE_INSTALLER_OS_RELEASE=" + osRelease}, "KEY")
		if want := "kcare installer: unsupported system: CentOS Stream 9 (kcare installs on Debian or Ubuntu, x86_64, with systemd)\n"; exit != 1 || stderr != want {
			t.Errorf("on CentOS: exit %d, stderr %q; want 1, %q", exit, stderr, want)
		}
	})
	t.Run("refuses_missing_os_release", func(t *testing.T) {
		exit, stderr := runScript(t, script, []string{"KCARE_INSTALLER_OS_RELEASE=/nonexistent/os-release"})
		if exit != 1 || !strings.Contains(stderr, "unsupported system") {
			t.Errorf("without os-release: exit %d, stderr %q", exit, stderr)
		}
	})

	t.Run("serves_packages", func(t *testing.T) {
		code, body := installerGet(t, srv.URL+"/packages/kcare_0.10.0-1_amd64.deb")
		if code != http.StatusOK || body != string(newest) {
			t.Errorf("GET the package: %d %q", code, body)
		}
		for _, path := range []string{"/packages/kcare_0.1.0-1_amd64.deb", "/packages/..%2fportal.key", "/packages/.hidden.deb"} {
			if code, _ := installerGet(t, srv.URL+path); code != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", path, code)
			}
		}
	})

	t.Run("ignores_host", func(t *testing.T) {
		for _, host := range []string{"evil.example", "evil.example:8443", "x';reboot;'"} {
			code, body := getWithHost(t, srv.URL+"/installer", host, "X-Forwarded-Proto", "http", "X-Forwarded-Host", "evil.example")
			if code != http.StatusOK || !strings.Contains(body, "PORTAL='"+testExternalURL+"'\n") || strings.Contains(body, "evil") || strings.Contains(body, "reboot") {
				t.Errorf("GET /installer with Host %q: %d\n%s", host, code, body)
			}
		}
	})
}

// TestInstallerWithoutExternalURL: a portal with no external URL set
// answers /installer with a script that refuses, whatever Host the
// request names, and never writes that Host into the script.
func TestInstallerWithoutExternalURL(t *testing.T) {
	data, srv := installerPortal(t)
	os.MkdirAll(filepath.Join(data, "packages"), 0o700)
	os.WriteFile(filepath.Join(data, "packages", "kcare_0.10.0-1_amd64.deb"), []byte("the package"), 0o600)
	code, body := getWithHost(t, srv.URL+"/installer", "evil.example")
	if strings.Contains(body, "evil.example") {
		t.Errorf("the installer names the request's Host:\n%s", body)
	}
	if code != http.StatusServiceUnavailable {
		t.Errorf("GET /installer without an external URL: %d, want 503", code)
	}
	exit, stderr := runScript(t, body, nil)
	if want := "kcare installer: this portal does not know its own address: its administrator starts eportal serve with --external-url https://HOST[:PORT]\n"; exit != 1 || stderr != want {
		t.Errorf("the refusal: exit %d, stderr %q; want 1, %q", exit, stderr, want)
	}
}

func TestParseExternalURL(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"https://eportal.example.com", "https://eportal.example.com", ""},
		{"https://eportal.example.com:8443/", "https://eportal.example.com:8443", ""},
		{"http://192.0.2.10:8080", "http://192.0.2.10:8080", ""},
		{"https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443", ""},
		{"https://example.com/kcare/", "https://example.com/kcare", ""},
		{"ftp://eportal.example.com", "", `external URL "ftp://eportal.example.com": want http:// or https://`},
		{"eportal.example.com", "", `external URL "eportal.example.com": want http:// or https://`},
		{"https://user:pw@eportal.example.com", "", `external URL "https://user:pw@eportal.example.com": want no user, query or fragment`},
		{"https://eportal.example.com/?x=1", "", `external URL "https://eportal.example.com/?x=1": want no user, query or fragment`},
		{"https://eportal.example.com/a'b", "", `external URL "https://eportal.example.com/a'b": bad path "/a'b"`},
		{"https://eportal.example.com/a%20b", "", `external URL "https://eportal.example.com/a%20b": bad path "/a b"`},
		{"https://", "", `external URL "https://": bad host ""`},
	} {
		got, err := server.ParseExternalURL(tt.in)
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		if got != tt.want || errText != tt.err {
			t.Errorf("ParseExternalURL(%q) = %q, %q; want %q, %q", tt.in, got, errText, tt.want, tt.err)
		}
	}
}

// testCertPEM is a certificate for the installer's TLS tests (its content
// is not checked by the script, only carried).
const testCertPEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

// TestInstallerTLS: served for an https portal with a self-signed
// certificate, the script downloads trusting that certificate and makes it
// the agent's CA_BUNDLE; for a plain http portal it warns first.
func TestInstallerTLS(t *testing.T) {
	pin := "sha256//" + strings.Repeat("B", 43) + "="
	withPackage := func(data string) {
		os.MkdirAll(filepath.Join(data, "packages"), 0o700)
		os.WriteFile(filepath.Join(data, "packages", "kcare_0.10.0-1_amd64.deb"), []byte("the package"), 0o600)
	}
	data, srv := installerPortal(t, server.InstallerOptions{ExternalURL: testExternalURL, CACert: []byte(testCertPEM), Pin: pin})
	withPackage(data)
	code, script := installerGet(t, srv.URL+"/installer")
	if code != http.StatusOK {
		t.Fatalf("GET /installer: %d\n%s", code, script)
	}
	for _, want := range []string{
		"#   curl -fsS -k --pinnedpubkey " + pin + " " + testExternalURL + "/installer | sh -s -- [ACTIVATION_KEY]\n",
		"# The portal's certificate (self-signed, pin " + pin + "): the\n",
		"cat > \"$TLS_CA\" <<'KCARE_CERT_END'\n" + testCertPEM + "KCARE_CERT_END\n",
		`fetch() { curl -fsS --retry 3 ${TLS_CA:+--cacert "$TLS_CA"} -o "$2" "$1"; }`,
		`fetch() { wget -q ${TLS_CA:+--ca-certificate="$TLS_CA"} -O "$2" "$1"; }`,
		"\nset_conf CA_BUNDLE \"$CA_BUNDLE\"\n",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("installer lacks %q", want)
		}
	}
	if strings.Contains(script, "plain http") {
		t.Error("the https installer warns of plain http")
	}
	if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v\n%s", err, out)
	}

	// Plain http: the first thing the script says is a warning, and it
	// carries no certificate even if one was given.
	data, srv = installerPortal(t, server.InstallerOptions{ExternalURL: "http://eportal.example.com:8080", CACert: []byte(testCertPEM), Pin: pin})
	withPackage(data)
	_, script = installerGet(t, srv.URL+"/installer")
	if strings.Contains(script, "BEGIN CERTIFICATE") || strings.Contains(script, "CA_BUNDLE") {
		t.Errorf("the http installer carries a certificate:\n%s", script)
	}
	exit, stderr := runScript(t, script, []string{"KCARE_INSTALLER_OS_RELEASE=/nonexistent/os-release"})
	want := "kcare installer: warning: http://eportal.example.com:8080 is plain http: the agent's secret and its updates cross the network unencrypted; ask the portal's administrator for HTTPS (eportal serve --tls-self-signed)\n" +
		"kcare installer: cannot read /nonexistent/os-release: unsupported system (kcare installs on Debian or Ubuntu, x86_64, with systemd)\n"
	if exit != 1 || stderr != want {
		t.Errorf("the http installer: exit %d, stderr %q; want 1, %q", exit, stderr, want)
	}
}
