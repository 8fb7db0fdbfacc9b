package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
)

const testUpstreamToken = "0123456789abcdef0123456789abcdef01234567"

// fakeUpstream is an upstream portal with no levels that answers only
// requests carrying testUpstreamToken, and records the keys it was sent.
type fakeUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	keys []string
	seen chan struct{} // closed on the first request with the right key
	once sync.Once
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	u := &fakeUpstream{seen: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("X-Api-Key")
		u.mu.Lock()
		u.keys = append(u.keys, key)
		u.mu.Unlock()
		if r.URL.Path != "/api/v1/mirror/levels" || key != testUpstreamToken {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		u.once.Do(func() { close(u.seen) })
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"levels":[]}`))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *fakeUpstream) sent() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.keys...)
}

// mirrorData is a data dir that trusts a publisher key.
func mirrorData(t *testing.T) string {
	t.Helper()
	data := t.TempDir()
	pub, err := bundletest.Signer("kcare cli test publisher").PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(data, "publishers"), 0o700)
	if err := os.WriteFile(filepath.Join(data, "publishers", "publisher.pub"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const upstreamTokenWarning = "eportal sync: warning: --upstream-token is visible to other local users (ps); use --upstream-token-file FILE or KCARE_UPSTREAM_TOKEN instead\n"

// TestSyncTokenSources: eportal sync reads the upstream token from a file
// or the environment without a word, warns when it is given on the
// command line, and refuses a missing or empty file.
func TestSyncTokenSources(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	empty := writeSecret(t, "\n")
	tests := []struct {
		name   string
		env    string
		args   []string
		code   int
		stderr string
		sent   bool // whether the upstream got the token
	}{
		{"file", "", []string{"--upstream-token-file", writeSecret(t, testUpstreamToken+"\n")}, 0, "", true},
		{"env", testUpstreamToken, nil, 0, "", true},
		{"flag", "", []string{"--upstream-token", testUpstreamToken}, 0, upstreamTokenWarning, true},
		{"missing_file", "", []string{"--upstream-token-file", missing}, 1,
			"eportal sync: --upstream-token-file: open " + missing + ": no such file or directory\n", false},
		{"empty_file", "", []string{"--upstream-token-file", empty}, 1,
			"eportal sync: --upstream-token-file: " + empty + " is empty\n", false},
		{"two_ways", testUpstreamToken, []string{"--upstream-token-file", writeSecret(t, testUpstreamToken)}, 2,
			"eportal sync: --upstream-token-file, KCARE_UPSTREAM_TOKEN and --upstream-token: given more than one way; give one\n", false},
		{"none", "", nil, 2, "eportal sync: --upstream and an upstream token (--upstream-token-file FILE or KCARE_UPSTREAM_TOKEN) are required\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newFakeUpstream(t)
			t.Setenv("KCARE_UPSTREAM_TOKEN", tt.env)
			args := append([]string{"sync", "--data", mirrorData(t), "--upstream", up.URL}, tt.args...)
			stdout, stderr, code := run(t, "", args...)
			if code != tt.code || stderr != tt.stderr {
				t.Errorf("eportal %s: exit %d, stderr %q; want %d, %q", strings.Join(args, " "), code, stderr, tt.code, tt.stderr)
			}
			if tt.code == 0 && stdout != "fetched 0 levels, refused 0\n" {
				t.Errorf("stdout %q, want %q", stdout, "fetched 0 levels, refused 0\n")
			}
			if got := up.sent(); tt.sent != (len(got) == 1 && got[0] == testUpstreamToken) || !tt.sent && len(got) != 0 {
				t.Errorf("the upstream was sent keys %q; want the token: %v", got, tt.sent)
			}
		})
	}
}

// TestServeTokenFile: eportal serve syncs with the token from
// --upstream-token-file, and refuses to start with a missing one.
func TestServeTokenFile(t *testing.T) {
	up := newFakeUpstream(t)
	data := mirrorData(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var stderr strings.Builder
	var mu sync.Mutex
	go func() {
		done <- Run(ctx, []string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--upstream", up.URL,
			"--upstream-token-file", writeSecret(t, testUpstreamToken+"\n")}, strings.NewReader(""), &strings.Builder{}, lockedWriter{&mu, &stderr})
	}()
	select {
	case <-up.seen:
	case code := <-done:
		t.Fatalf("eportal serve exited %d before syncing:\n%s", code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("eportal serve did not sync within 30s")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("eportal serve: exit %d", code)
	}
	mu.Lock()
	if strings.Contains(stderr.String(), "warning") || strings.Contains(stderr.String(), testUpstreamToken) {
		t.Errorf("eportal serve with a token file logged a warning or the token:\n%s", stderr.String())
	}
	mu.Unlock()

	missing := filepath.Join(t.TempDir(), "missing")
	_, errOut, code := run(t, "", "serve", "--data", data, "--listen", "127.0.0.1:0", "--upstream", up.URL, "--upstream-token-file", missing)
	if want := "eportal serve: --upstream-token-file: open " + missing + ": no such file or directory\n"; code != 1 || errOut != want {
		t.Errorf("serve with a missing token file: exit %d, stderr %q; want 1, %q", code, errOut, want)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
