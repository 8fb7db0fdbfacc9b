package faults_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/portalclient"
	"github.com/kcare/kcare/internal/trust"
	"github.com/kcare/kcare/test/vm/fixture"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// hostBinary returns eportal or loadgen, built once per test binary.
func hostBinary(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("portal fault tests do not run with -short")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "kcare-faults-bin-")
		if binErr != nil {
			return
		}
		for pkg, out := range map[string]string{"./cmd/eportal": "eportal", "./test/loadgen": "loadgen", "./cmd/kcare-build": "kcare-build"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, out), pkg)
			cmd.Dir = fixture.RepoRoot()
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, name)
}

// hostPortal is an eportal serve the test runs on the host's loopback,
// on SQLite in its data directory or on PostgreSQL.
type hostPortal struct {
	t         *testing.T
	bin       string
	data, dsn string
	addr      string
	token     string
	publisher *trust.Signer
	env       []string // added to eportal serve's environment

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  bytes.Buffer
}

// newHostPortal prepares a data directory under dir (which may be a
// small file system of the test's own): a publisher key trusted, an
// admin with an API token; with dsn, the store is there.
func newHostPortal(t *testing.T, dir, dsn string) *hostPortal {
	t.Helper()
	p := &hostPortal{t: t, bin: hostBinary(t, "eportal"), data: filepath.Join(dir, "data"), dsn: dsn}
	priv, pub, err := trust.GenerateKey("kcare faults publisher", "")
	if err != nil {
		t.Fatal(err)
	}
	if p.publisher, err = trust.ReadSigner(priv); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(p.data, "publishers"), 0o755)
	if err := os.WriteFile(filepath.Join(p.data, "publishers", "faults.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "publisher.key"), priv, 0o600)
	p.eportal("faults admin password\n", "user", "add", "admin", "--role", "admin")
	p.token = p.eportal("", "token", "add", "--user", "admin")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	l.Close()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("eportal log:\n%s", tail(p.logText(), 30))
		}
	})
	return p
}

func (p *hostPortal) url() string { return "http://" + p.addr }

func (p *hostPortal) args(args ...string) []string {
	args = append(args, "--data", p.data)
	if p.dsn != "" {
		args = append(args, "--db", p.dsn)
	}
	return args
}

// eportal runs an admin command and returns its stdout.
func (p *hostPortal) eportal(stdin string, args ...string) string {
	p.t.Helper()
	out, err := p.tryEportal(stdin, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *hostPortal) tryEportal(stdin string, args ...string) (string, error) {
	cmd := exec.Command(p.bin, p.args(args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("eportal %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// start runs eportal serve and waits up to 30s for /healthz.
func (p *hostPortal) start(extra ...string) {
	p.t.Helper()
	p.mu.Lock()
	cmd := exec.Command(p.bin, p.args(append([]string{"serve", "--listen", p.addr}, extra...)...)...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.log}, &lockedWriter{mu: &p.mu, w: &p.log}
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(p.url() + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-done:
			p.t.Fatalf("eportal serve exited:\n%s", p.logText())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waited 30s for eportal serve: %v\n%s", err, p.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pid is the running eportal serve's process id.
func (p *hostPortal) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// kill kills eportal serve with SIGKILL, if it runs.
func (p *hostPortal) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

func (p *hostPortal) logText() string {
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

// client is a portal client for the fake kernel's agent.
func (p *hostPortal) client() *portalclient.Client {
	return &portalclient.Client{PatchServer: p.url(), UserAgent: "kcare-faults", Backoff: 50 * time.Millisecond,
		HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}}
}

// register registers a server under a new key and returns its client.
func (p *hostPortal) register(host string) *portalclient.Client {
	p.t.Helper()
	key := p.eportal("", "key", "add", "--note", "faults")
	c := p.client()
	id, secret, err := c.Register(context.Background(), key, host)
	if err != nil {
		p.t.Fatalf("register %s: %v", host, err)
	}
	c.ServerID, c.Secret = id, secret
	return c
}

// indexRequest is a GET of the fake kernel's index as the server c.
func indexRequest(ctx context.Context, base string, c *portalclient.Client) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/index/"+fakekernel.BuildID, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.ServerID, c.Secret)
	return req, nil
}
