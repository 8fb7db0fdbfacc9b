// Package portalserve attacks a real `eportal serve` process from the
// outside, as the attack run did: the binary is built with go build, runs
// on 127.0.0.1, and attackers come from their own loopback addresses
// (127.0.0.2 and up) so that per-source limits never reach the client under
// test.
package portalserve

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/testbin"
	"github.com/kcare/kcare/internal/trust"
)

// Bounds on the waits of setting up and tearing down.
const (
	startBound = 30 * time.Second // for eportal serve to say where it listens
	stopBound  = 25 * time.Second // eportal's own shutdown bound is 20s
)

var publisher = bundletest.Signer("kcare portalserve test publisher")

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// portal is one eportal data directory and, once started, its server.
type portal struct {
	t    *testing.T
	bin  string
	data string
	url  string // http://127.0.0.1:PORT once started

	mu  sync.Mutex
	cmd *exec.Cmd
	log bytes.Buffer
}

// newPortal makes a data directory that trusts the test publisher.
func newPortal(t *testing.T) *portal {
	t.Helper()
	p := &portal{t: t, bin: testbin.Path(t, "cmd/eportal"), data: filepath.Join(t.TempDir(), "data")}
	pub, err := publisher.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p.data, "publishers"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.data, "publishers", "publisher.pub"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// eportal runs an admin command on the portal's data and returns its
// standard output, trimmed.
func (p *portal) eportal(stdin string, args ...string) string {
	p.t.Helper()
	cmd := exec.Command(p.bin, append(args, "--data", p.data)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("eportal %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// adminToken adds an admin and returns an API token of theirs.
func (p *portal) adminToken() string {
	p.t.Helper()
	p.eportal("portalserve admin password\n", "user", "add", "admin", "--role", "admin")
	return p.eportal("", "token", "add", "--user", "admin")
}

var servingRE = regexp.MustCompile(`msg="eportal serving" addr=(\S+)`)

// start runs `eportal serve` on 127.0.0.1 with extra arguments and waits
// up to startBound for it to say where it listens. wrap, if not empty, is
// a shell prefix run before exec (such as "ulimit -n 1024;").
func (p *portal) start(wrap string, args ...string) {
	p.t.Helper()
	args = append([]string{"serve", "--data", p.data, "--listen", "127.0.0.1:0"}, args...)
	var cmd *exec.Cmd
	if wrap == "" {
		cmd = exec.Command(p.bin, args...)
	} else {
		cmd = exec.Command("sh", append([]string{"-c", wrap + ` exec "$0" "$@"`, p.bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.log}, &lockedWriter{mu: &p.mu, w: &p.log}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.t.Cleanup(func() { p.stop(exited) })
	deadline := time.After(startBound)
	for {
		if m := servingRE.FindStringSubmatch(p.logText()); m != nil {
			p.url = "http://" + m[1]
			return
		}
		select {
		case <-exited:
			p.t.Fatalf("eportal serve exited at start:\n%s", p.logText())
		case <-deadline:
			p.t.Fatalf("waited %s for eportal serve to listen:\n%s", startBound, p.logText())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *portal) stop(exited chan struct{}) {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(stopBound):
		p.cmd.Process.Kill()
		<-exited
	}
	if p.t.Failed() {
		p.t.Logf("eportal serve log:\n%s", p.logText())
	}
}

func (p *portal) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// from returns an HTTP client whose connections come from the loopback
// address src (127.0.0.1 for the client under test, 127.0.0.2 and up for
// attackers).
func from(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext}}
}

// get sends a GET with the given headers and returns the status and body.
func get(t *testing.T, c *http.Client, u string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// publish uploads a signed bundle of level for the fake kernel.
func (p *portal) publish(token string, level int) {
	p.t.Helper()
	data, sig := bundletest.Bundle(p.t, publisher, level, bundletest.Options{})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile("bundle", "b.kcp")
	w.Write(data)
	w, _ = mw.CreateFormFile("signature", "b.kcp.sig")
	w.Write(sig)
	mw.Close()
	req, _ := http.NewRequest("POST", p.url+"/api/v1/publish", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Api-Key", token)
	resp, err := from("127.0.0.1").Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		p.t.Fatalf("publish level %d: %d %s", level, resp.StatusCode, b)
	}
}

// portalKeyring is the portal's index key, as an agent trusts it.
func (p *portal) portalKeyring() *trust.Keyring {
	p.t.Helper()
	pub, err := os.ReadFile(filepath.Join(p.data, "portal.pub"))
	if err != nil {
		p.t.Fatal(err)
	}
	k, err := trust.ReadKeyring(pub)
	if err != nil {
		p.t.Fatal(err)
	}
	return k
}

// runServe runs `eportal serve` expecting it to refuse its arguments and
// exit; it is killed after startBound. It returns the combined output.
func runServe(p *portal, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startBound)
	defer cancel()
	args = append([]string{"serve", "--data", p.data, "--listen", "127.0.0.1:0"}, args...)
	out, err := exec.CommandContext(ctx, p.bin, args...).CombinedOutput()
	return string(out), err
}
