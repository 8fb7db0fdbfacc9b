package vm_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/qemu"
)

// tinyproxy is Debian's tinyproxy on the host's loopback.
type tinyproxy struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

func startTinyproxy(t *testing.T) *tinyproxy {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tinyproxy not found (install tinyproxy)")
		}
		t.Skip("tinyproxy not found")
	}
	dir, err := os.MkdirTemp("", "tinyproxy")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	p := &tinyproxy{port: freePort(t), dir: dir}
	conf := fmt.Sprintf("User nobody\nGroup nogroup\nPort %d\nListen 127.0.0.1\nTimeout 60\nLogFile %q\nLogLevel Info\nPidFile %q\nMaxClients 20\nAllow 127.0.0.1\n",
		p.port, filepath.Join(dir, "tinyproxy.log"), filepath.Join(dir, "tinyproxy.pid"))
	os.WriteFile(filepath.Join(dir, "tinyproxy.conf"), []byte(conf), 0o644)
	p.cmd = exec.Command(bin, "-d", "-c", filepath.Join(dir, "tinyproxy.conf"))
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tinyproxy did not listen within 10s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { p.stop(); os.RemoveAll(dir) })
	return p
}

func (p *tinyproxy) stop() {
	if p.cmd != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.cmd = nil
	}
}

func (p *tinyproxy) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "tinyproxy.log"))
	return string(b)
}

// TestThroughProxy: the portal listens on 127.0.0.2, which the guest
// cannot reach; kcare.conf's HTTP_PROXY points at tinyproxy on the host,
// which can. The proxy's log shows the agent's requests; with the proxy
// down, --update fails clearly and the kernel is untouched.
func TestThroughProxy(t *testing.T) {
	f := requireVM(t)
	fp, err := f.NewPortal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fp.Host = "127.0.0.2"
	if err := fp.Start(); err != nil {
		t.Fatal(err)
	}
	defer fp.Stop()
	p := &hostPortal{Portal: fp, t: t}
	p.publish(1, time.Now().Add(-72*time.Hour))
	key := p.eportal("", "key", "add")
	proxy := startTinyproxy(t)

	share := t.TempDir()
	pub, _ := os.ReadFile(filepath.Join(fp.Data, "portal.pub"))
	os.WriteFile(filepath.Join(share, "portal.pub"), pub, 0o644)
	g := boot(t, f, []qemu.Share{{Tag: "host", HostDir: share, GuestPath: "/mnt/host"}}, false)
	g.ok("cp /mnt/host/portal.pub /etc/sysconfig/kcare/keys/ && mkdir -p /etc/sysconfig/kcare && printf '%s\\n' " + shellWords([]string{
		"PATCH_SERVER=" + fp.GuestURL(),
		fmt.Sprintf("HTTP_PROXY=http://10.0.2.2:%d", proxy.port),
	}) + " > /etc/sysconfig/kcare/kcare.conf")
	if r := g.sh(fmt.Sprintf("wget -q -T 3 -O- %s/healthz", fp.GuestURL())); r.Exit == 0 {
		t.Fatalf("the guest reaches the portal directly; the test needs it not to")
	}
	if r := g.kcarectl("--register " + key); r.Exit != 0 {
		t.Fatalf("--register through the proxy: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	if got := g.cmdline(); got != cmdlineL1 {
		t.Errorf("/proc/cmdline = %q, want %q", got, cmdlineL1)
	}
	log := proxy.log()
	for _, want := range []string{"POST " + fp.URL() + "/admin/api/register", "POST " + fp.URL() + "/api/v1/run", "GET " + fp.URL() + "/blobs/sha256/"} {
		if !strings.Contains(log, want) {
			t.Errorf("tinyproxy's log lacks %q:\n%s", want, requestLines(log))
		}
	}

	proxy.stop()
	g.klpLog()
	r := g.kcarectl("--update")
	if r.Exit == 0 || !strings.Contains(r.Stderr, "patch server unreachable") {
		t.Errorf("--update with the proxy down: exit %d, stderr %q; want a failure naming the unreachable patch server", r.Exit, r.Stderr)
	}
	if got := g.cmdline(); got != cmdlineL1 {
		t.Errorf("/proc/cmdline = %q, want level 1 untouched", got)
	}
	if log := g.klpLog(); len(log) != 0 {
		t.Errorf("kernel livepatch activity with the proxy down: %q", log)
	}
}

// testCA makes a CA and a server certificate it signs for the portal's
// addresses, written as PEM files in dir.
func testCA(t *testing.T, dir, name string) (caPath, certPath, keyPath string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "eportal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.2.2")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	caPath, certPath, keyPath = filepath.Join(dir, name+"-ca.pem"), filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem")
	os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return caPath, certPath, keyPath
}

// TestHTTPS: the agent in the guest trusts the portal's certificate
// through CA_BUNDLE and is patched over HTTPS; a certificate from another
// CA is refused with a clear error and nothing is touched.
func TestHTTPS(t *testing.T) {
	f := requireVM(t)
	share := t.TempDir()
	ca, cert, key := testCA(t, share, "good")
	otherCA, otherCert, otherKey := testCA(t, share, "other")
	fp, err := f.NewPortal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fp.TLSCert, fp.TLSKey, fp.TLSCA = cert, key, ca
	if err := fp.Start(); err != nil {
		t.Fatal(err)
	}
	p := &hostPortal{Portal: fp, t: t}
	defer func() { fp.Stop() }()
	p.publish(1, time.Now().Add(-72*time.Hour))
	akey := p.eportal("", "key", "add")
	pub, _ := os.ReadFile(filepath.Join(fp.Data, "portal.pub"))
	os.WriteFile(filepath.Join(share, "portal.pub"), pub, 0o644)

	g := boot(t, f, []qemu.Share{{Tag: "host", HostDir: share, GuestPath: "/mnt/host"}}, false)
	g.ok("cp /mnt/host/portal.pub /etc/sysconfig/kcare/keys/ && cp /mnt/host/good-ca.pem /etc/sysconfig/kcare/ca.pem && printf '%s\\n' " + shellWords([]string{
		"PATCH_SERVER=" + fp.GuestURL(),
		"CA_BUNDLE=/etc/sysconfig/kcare/ca.pem",
	}) + " > /etc/sysconfig/kcare/kcare.conf")
	if r := g.kcarectl("--register " + akey); r.Exit != 0 {
		t.Fatalf("--register over HTTPS: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	if got := g.cmdline(); got != cmdlineL1 {
		t.Errorf("/proc/cmdline = %q, want %q", got, cmdlineL1)
	}

	// The same portal with a certificate from another CA.
	fp.Stop()
	fp.TLSCert, fp.TLSKey, fp.TLSCA = otherCert, otherKey, otherCA
	if err := fp.Start(); err != nil {
		t.Fatal(err)
	}
	p.publish(2, time.Now().Add(-48*time.Hour))
	g.klpLog()
	r := g.kcarectl("--update")
	if r.Exit == 0 || !strings.Contains(r.Stderr, "TLS certificate is not trusted") {
		t.Errorf("--update against a certificate from another CA: exit %d, stderr %q; want a refusal naming the untrusted certificate", r.Exit, r.Stderr)
	}
	if got := g.cmdline(); got != cmdlineL1 {
		t.Errorf("/proc/cmdline = %q, want level 1 untouched", got)
	}
	if log := g.klpLog(); len(log) != 0 {
		t.Errorf("kernel livepatch activity after a refused certificate: %q", log)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// requestLines is the requests in tinyproxy's log, one a line.
func requestLines(log string) string {
	var b strings.Builder
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Request (") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
