package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	kcarectl "github.com/kcare/kcare/cmd/kcarectl/cli"
	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/testbin"
)

// Bounds on the waits of setting up and tearing down.
const (
	startBound = 30 * time.Second // for eportal serve to say where it listens
	stopBound  = 25 * time.Second // eportal's own shutdown bound is 20s
)

var publisher = bundletest.Signer("kcare compat test publisher")

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// portal is a real eportal serve on 127.0.0.1 with an admin (password
// and API token), a read-only operator, and its publisher's key trusted.
type portal struct {
	t    *testing.T
	bin  string
	data string
	url  string

	admin, ro string // API tokens
	adminPW   string

	mu  sync.Mutex
	cmd *exec.Cmd
	log bytes.Buffer
}

var servingRE = regexp.MustCompile(`msg="eportal serving" addr=(\S+)`)

// newPortal starts a portal with no keys, feeds but main, or levels.
func newPortal(t *testing.T) *portal {
	t.Helper()
	p := &portal{t: t, bin: testbin.Path(t, "cmd/eportal"), data: filepath.Join(t.TempDir(), "data"), adminPW: "compat admin password"}
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
	p.eportal(p.adminPW+"\n", "user", "add", "admin", "--role", "admin")
	p.admin = p.eportal("", "token", "add", "--user", "admin")
	p.eportal("compat reader password\n", "user", "add", "reader", "--role", "readonly")
	p.ro = p.eportal("", "token", "add", "--user", "reader")
	p.start()
	return p
}

// eportal runs an admin command on the portal's data and returns its
// standard output, trimmed.
func (p *portal) eportal(stdin string, args ...string) string {
	p.t.Helper()
	out, stderr, err := p.eportalRun(stdin, args...)
	if err != nil {
		p.t.Fatalf("eportal %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(out)
}

func (p *portal) eportalRun(stdin string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(p.bin, append(args, "--data", p.data)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (p *portal) start() {
	p.t.Helper()
	// Every kcarectl of the tests comes from 127.0.0.1, each with its own
	// idle connections: no per-source bound, as behind a proxy.
	cmd := exec.Command(p.bin, "serve", "--data", p.data, "--listen", "127.0.0.1:0", "--max-conns-per-source", "0")
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.log}, &lockedWriter{mu: &p.mu, w: &p.log}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(stopBound):
			cmd.Process.Kill()
			<-exited
		}
		if p.t.Failed() {
			p.t.Logf("eportal serve log:\n%s", p.logText())
		}
	})
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

// answer is an HTTP answer as a script sees it.
type answer struct {
	code int
	ct   string
	body string
}

// json decodes the body into v.
func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", a.code, err, a.body)
	}
}

// call sends method path with a body of contentType (none when "") and
// the headers; auth "admin", "ro" or "" picks an X-Api-Key.
func (p *portal) call(t *testing.T, method, path, contentType, body string, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		if k == "user" {
			name, pw, _ := strings.Cut(v, ":")
			req.SetBasicAuth(name, pw)
			continue
		}
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

// api calls the REST API as the admin (by token).
func (p *portal) api(t *testing.T, method, path string) answer {
	t.Helper()
	return p.call(t, method, path, "", "", map[string]string{"X-Api-Key": p.admin})
}

// publish uploads a signed bundle of level for the fake kernel, released
// at released, in patchset.
func (p *portal) publish(t *testing.T, level int, released time.Time, patchset string) {
	t.Helper()
	data, sig := bundletest.Bundle(t, publisher, level, bundletest.Options{Released: released})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile("bundle", "b.kcp")
	w.Write(data)
	w, _ = mw.CreateFormFile("signature", "b.kcp.sig")
	w.Write(sig)
	mw.WriteField("released", released.UTC().Format(time.RFC3339))
	mw.WriteField("patchset", patchset)
	mw.Close()
	a := p.call(t, "POST", "/api/v1/publish", mw.FormDataContentType(), body.String(), map[string]string{"X-Api-Key": p.admin})
	if a.code != 200 {
		t.Fatalf("publish level %d: %d %s", level, a.code, a.body)
	}
}

// host is a server with a fake kernel under a fake root, running kcarectl
// in this process, as its command line runs it.
type host struct {
	t    *testing.T
	root string
	k    *fakekernel.Kernel
}

// kcarectlMu keeps one kcarectl at a time: it loads through one fake
// kernel hook.
var kcarectlMu sync.Mutex

// newHost makes a root with a fake kernel, the publisher's and the
// portal's keys, and kcare.conf with conf's lines.
func newHost(t *testing.T, p *portal, conf ...string) *host {
	t.Helper()
	root := t.TempDir()
	k, err := fakekernel.New(root, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	keys := filepath.Join(root, "etc/sysconfig/kcare/keys")
	os.MkdirAll(keys, 0o755)
	pub, _ := publisher.PublicKey()
	os.WriteFile(filepath.Join(keys, "publisher.pub"), pub, 0o644)
	if p != nil {
		portalPub, err := os.ReadFile(filepath.Join(p.data, "portal.pub"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(keys, "portal.pub"), portalPub, 0o644)
	}
	h := &host{t: t, root: root, k: k}
	h.writeConf(conf...)
	return h
}

func (h *host) writeConf(lines ...string) {
	h.t.Helper()
	text := ""
	for _, l := range lines {
		text += l + "\n"
	}
	if err := os.WriteFile(filepath.Join(h.root, "etc/sysconfig/kcare/kcare.conf"), []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// kcarectl runs kcarectl with args on this host.
func (h *host) kcarectl(args ...string) (stdout, stderr string, code int) {
	kcarectlMu.Lock()
	defer kcarectlMu.Unlock()
	restore := kcarectl.UseLoader(h.k)
	defer restore()
	var o, e bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code = kcarectl.Run(ctx, append([]string{"--root", h.root}, args...), &o, &e)
	return o.String(), e.String(), code
}

// must runs kcarectl and fails the test unless it exits 0.
func (h *host) must(args ...string) string {
	h.t.Helper()
	out, errOut, code := h.kcarectl(args...)
	if code != 0 {
		h.t.Fatalf("kcarectl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fleet is a portal with three levels of the fake kernel's patches,
// released 10 days, 5 days and an hour before now, in patchsets KC_01 to
// KC_03, and two keys.
type fleet struct {
	*portal
	now time.Time
}

var levelAges = []time.Duration{240 * time.Hour, 120 * time.Hour, time.Hour}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	p := newPortal(t)
	now := time.Now()
	for i, age := range levelAges {
		p.publish(t, i+1, now.Add(-age), fmt.Sprintf("KC_%02d", i+1))
	}
	p.eportal("", "key", "add", "--key", "compat-key-a", "--note", "first")
	p.eportal("", "key", "add", "--key", "compat-key-b")
	return &fleet{portal: p, now: now}
}

// form encodes pairs as a urlencoded form.
func form(pairs ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		v.Add(pairs[i], pairs[i+1])
	}
	return v.Encode()
}
