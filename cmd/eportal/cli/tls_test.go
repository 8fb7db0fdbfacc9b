package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var pinRE = regexp.MustCompile(`tls_pin="?(sha256//[A-Za-z0-9+/]{43}=)`)

// needTool returns the path of a command the test needs, skipping the
// test without it, or failing it under CI=true.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// opensslPin is the pin of the certificate in certFile as OpenSSL
// computes it: x509 -pubkey | pkey -pubin -outform der | dgst -sha256
// -binary | base64.
func opensslPin(t *testing.T, certFile string) string {
	t.Helper()
	needTool(t, "openssl")
	out, err := exec.Command("sh", "-c", `openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`, "sh", certFile).Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	return "sha256//" + strings.TrimSpace(string(out))
}

// curl runs curl with args and returns its exit code and output.
func curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(needTool(t, "curl"), append([]string{"-sS", "--max-time", "20", "--noproxy", "*"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// TestServeSelfSigned: eportal serve --tls-self-signed makes a private
// certificate on first start and reuses it on the next; the pin it logs
// and eportal tls-pin prints is OpenSSL's for that certificate, curl
// --pinnedpubkey accepts it (and refuses another pin), curl and Go
// trust the certificate as a CA bundle for the address, and the
// installer served over HTTPS carries it.
func TestServeSelfSigned(t *testing.T) {
	data := mirrorData(t)
	os.MkdirAll(filepath.Join(data, "packages"), 0o700)
	os.WriteFile(filepath.Join(data, "packages", "kcare_0.10.0-1_amd64.deb"), []byte("the package"), 0o600)
	certFile := filepath.Join(data, "tls", "cert.pem")
	p := startServe(t, "--data", data, "--tls-self-signed", "--external-url", "https://127.0.0.1:8443")
	m := pinRE.FindStringSubmatch(p.Log())
	if m == nil {
		t.Fatalf("no tls_pin in the log:\n%s", p.Log())
	}
	pin := m[1]
	for _, f := range []string{"tls", "tls/cert.pem", "tls/key.pem"} {
		fi, err := os.Stat(filepath.Join(data, f))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]os.FileMode{true: os.ModeDir | 0o700, false: 0o600}[fi.IsDir()]; fi.Mode() != want {
			t.Errorf("%s is %v, want %v", f, fi.Mode(), want)
		}
	}
	certPEM, _ := os.ReadFile(certFile)

	if got := opensslPin(t, certFile); got != pin {
		t.Errorf("the logged pin is %s, OpenSSL's %s", pin, got)
	}
	if stdout, stderr, code := run(t, "", "tls-pin", "--data", data); code != 0 || stdout != pin+"\n" || stderr != "" {
		t.Errorf("eportal tls-pin: exit %d, stdout %q, stderr %q; want 0, %q", code, stdout, stderr, pin+"\n")
	}
	url := "https://" + p.Addr
	if code, out := curl(t, "-k", "--pinnedpubkey", pin, url+"/healthz"); code != 0 || out != "ok\n" {
		t.Errorf("curl --pinnedpubkey with the pin: exit %d, %q", code, out)
	}
	other := "sha256//" + strings.Repeat("A", 43) + "="
	if code, out := curl(t, "-k", "--pinnedpubkey", other, url+"/healthz"); code != 90 {
		t.Errorf("curl --pinnedpubkey with another pin: exit %d, %q; want 90 (SSL public key does not match pinned public key)", code, out)
	}
	if code, out := curl(t, "--cacert", certFile, url+"/healthz"); code != 0 || out != "ok\n" {
		t.Errorf("curl --cacert with the certificate: exit %d, %q", code, out)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := client.Get(url + "/installer")
	if err != nil {
		t.Fatalf("Go with the certificate as its only CA: %v", err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"\nPORTAL='https://127.0.0.1:8443'\n",
		"\n" + strings.TrimSpace(string(certPEM)) + "\n",
		"\nset_conf CA_BUNDLE \"$CA_BUNDLE\"\n",
		"# The portal's certificate (self-signed, pin " + pin + ")",
	} {
		if !strings.Contains(string(script), want) {
			t.Errorf("the installer lacks %q:\n%s", want, script)
		}
	}
	p.Stop(t)

	// The next start reuses the certificate and its pin.
	p = startServe(t, "--data", data, "--tls-self-signed", "--external-url", "https://127.0.0.1:8443")
	if again, _ := os.ReadFile(certFile); !bytes.Equal(again, certPEM) {
		t.Error("the second start made a new certificate")
	}
	if m := pinRE.FindStringSubmatch(p.Log()); m == nil || m[1] != pin {
		t.Errorf("the second start logged pin %v, want %s", m, pin)
	}
	p.Stop(t)

	// A host the certificate does not name is refused at start.
	_, stderr, code := run(t, "", "serve", "--data", data, "--listen", "127.0.0.1:0", "--tls-self-signed", "--external-url", "https://eportal.example.com")
	if code != 1 || !strings.Contains(stderr, "not eportal.example.com: the certificate does not cover the host") {
		t.Errorf("serve for a host the certificate lacks: exit %d, %q", code, stderr)
	}

	empty := t.TempDir()
	if _, stderr, code := run(t, "", "tls-pin", "--data", empty); code != 1 ||
		stderr != "eportal tls-pin: no self-signed certificate in "+filepath.Join(empty, "tls")+" (eportal serve --tls-self-signed makes one; --cert FILE pins another)\n" {
		t.Errorf("tls-pin without a certificate: exit %d, %q", code, stderr)
	}
	if stdout, _, code := run(t, "", "tls-pin", "--cert", certFile); code != 0 || stdout != pin+"\n" {
		t.Errorf("tls-pin --cert: exit %d, %q; want %q", code, stdout, pin+"\n")
	}
	if _, stderr, code := run(t, "", "serve", "--data", data, "--tls-self-signed", "--tls-cert", certFile, "--tls-key", certFile); code != 2 ||
		stderr != "eportal serve: --tls-self-signed or --tls-cert, not both\n" {
		t.Errorf("serve with both: exit %d, %q", code, stderr)
	}
	if _, stderr, code := run(t, "", "serve", "--data", data, "--tls-self-signed", "--external-url", "http://127.0.0.1:8443"); code != 2 ||
		stderr != "eportal serve: --external-url http://127.0.0.1:8443 is http://, but eportal serves HTTPS\n" {
		t.Errorf("serve HTTPS with an http external URL: exit %d, %q", code, stderr)
	}
}
