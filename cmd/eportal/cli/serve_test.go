package cli

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// servedPortal is an `eportal serve` running in this process.
type servedPortal struct {
	Addr   string // host:port it listens on
	cancel context.CancelFunc
	done   chan int
	mu     sync.Mutex
	log    strings.Builder
}

var servingRE = regexp.MustCompile(`msg="eportal serving" addr=(\S+)`)

// startServe runs `eportal serve --listen 127.0.0.1:0 args...` and waits
// up to 30s for it to log that it serves.
func startServe(t *testing.T, args ...string) *servedPortal {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &servedPortal{cancel: cancel, done: make(chan int, 1)}
	go func() {
		p.done <- Run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...), strings.NewReader(""), io.Discard, lockedWriter{&p.mu, &p.log})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := servingRE.FindStringSubmatch(p.Log()); m != nil {
			p.Addr = m[1]
			break
		}
		select {
		case code := <-p.done:
			t.Fatalf("eportal serve exited %d:\n%s", code, p.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("eportal serve did not start within 30s:\n%s", p.Log())
		}
	}
	t.Cleanup(func() { p.Stop(t) })
	return p
}

// Log is what the server has logged so far.
func (p *servedPortal) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Stop stops the server and checks it exited 0.
func (p *servedPortal) Stop(t *testing.T) {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	if code := <-p.done; code != 0 {
		t.Errorf("eportal serve exited %d:\n%s", code, p.Log())
	}
}

// publishOver uploads a bundle and its signature to the portal at url.
func publishOver(t *testing.T, client *http.Client, url, token string, data, sig []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range []struct {
		field string
		data  []byte
	}{{"bundle", data}, {"signature", sig}} {
		w, _ := mw.CreateFormFile(f.field, f.field)
		w.Write(f.data)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", url+"/api/v1/publish", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Api-Key", token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("publish: %s %s", resp.Status, b)
	}
}

// adminToken adds an admin and returns an API token of theirs.
func adminToken(t *testing.T, data string) string {
	t.Helper()
	if _, stderr, code := run(t, "correct horse battery\n", "user", "add", "admin", "--role", "admin", "--data", data); code != 0 {
		t.Fatalf("user add: %s", stderr)
	}
	tok, stderr, code := run(t, "", "token", "add", "--user", "admin", "--data", data)
	if code != 0 {
		t.Fatalf("token add: %s", stderr)
	}
	return strings.TrimSpace(tok)
}

// modes returns the permissions of every path under root, root included,
// as "0700 dir", "0600 dir/file".
func modes(t *testing.T, root string) map[string]os.FileMode {
	t.Helper()
	out := map[string]os.FileMode{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(root), p)
		out[rel] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServeInstallerExternalURL: a real eportal serve names its
// --external-url in the installer whatever Host a request carries, and
// refuses a bad one at start.
func TestServeInstallerExternalURL(t *testing.T) {
	data := mirrorData(t)
	os.MkdirAll(filepath.Join(data, "packages"), 0o700)
	os.WriteFile(filepath.Join(data, "packages", "kcare_0.10.0-1_amd64.deb"), []byte("the package"), 0o600)
	p := startServe(t, "--data", data, "--external-url", "https://eportal.example.com:8443/")
	req, _ := http.NewRequest("GET", "http://"+p.Addr+"/installer", nil)
	req.Host = "evil.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "\nPORTAL='https://eportal.example.com:8443'\n") || strings.Contains(string(body), "evil.example") {
		t.Errorf("GET /installer with Host evil.example: %s\n%s", resp.Status, body)
	}
	p.Stop(t)

	_, stderr, code := run(t, "", "serve", "--data", data, "--listen", "127.0.0.1:0", "--external-url", "https://evil.example/'$(reboot)'")
	if want := "eportal serve: --external-url: external URL \"https://evil.example/'$(reboot)'\": bad path \"/'$(reboot)'\"\n"; code != 2 || stderr != want {
		t.Errorf("serve with a bad --external-url: exit %d, stderr %q; want 2, %q", code, stderr, want)
	}
}
