package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

const testPublishToken = "fedcba9876543210fedcba9876543210fedcba98"

// fakePublishPortal accepts uploads carrying testPublishToken and
// records the keys it was sent.
func fakePublishPortal(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("X-Api-Key")
		mu.Lock()
		keys = append(keys, key)
		mu.Unlock()
		if r.URL.Path != "/api/v1/publish" || key != testPublishToken {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"unauthorized"}`))
			return
		}
		w.Write([]byte(`{"release":"6.1.0-56-amd64","level":1,"patchset":"K20261101_01","channel":"stable","digest":"abc"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), keys...)
	}
}

const publishTokenWarning = "kcare-build publish: warning: --token is visible to other local users (ps); use --token-file FILE or KCARE_PUBLISH_TOKEN instead\n"

// TestPublishTokenSources: publish reads the token from a file or the
// environment without a word, warns when it is given on the command line,
// and refuses a missing or empty file.
func TestPublishTokenSources(t *testing.T) {
	dir := t.TempDir()
	bundlePath := filepath.Join(dir, "l1.kcp")
	os.WriteFile(bundlePath, []byte("bundle"), 0o600)
	os.WriteFile(bundlePath+".sig", []byte("signature"), 0o600)
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte(testPublishToken+"\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	missing := filepath.Join(dir, "missing")
	published := "published " + bundlePath + ": 6.1.0-56-amd64 level 1, patchset K20261101_01 (stable), sha256 abc\n"
	tests := []struct {
		name           string
		env            string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"file", "", []string{"--token-file", file}, 0, published, ""},
		{"env", testPublishToken, nil, 0, published, ""},
		{"flag", "", []string{"--token", testPublishToken}, 0, published, publishTokenWarning},
		{"missing_file", "", []string{"--token-file", missing}, 1, "",
			"kcare-build publish: --token-file: open " + missing + ": no such file or directory\n"},
		{"empty_file", "", []string{"--token-file", empty}, 1, "", "kcare-build publish: --token-file: " + empty + " is empty\n"},
		{"two_ways", testPublishToken, []string{"--token", testPublishToken}, 2, "",
			"kcare-build publish: --token-file, KCARE_PUBLISH_TOKEN and --token: given more than one way; give one\n"},
		{"none", "", nil, 2, "", "kcare-build publish: a token is required: --token-file FILE or KCARE_PUBLISH_TOKEN\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, sent := fakePublishPortal(t)
			t.Setenv("KCARE_PUBLISH_TOKEN", tt.env)
			args := append([]string{"publish", "--portal", srv.URL}, append(tt.args, bundlePath)...)
			stdout, stderr, code := run(t, args...)
			if code != tt.code || stdout != tt.stdout || stderr != tt.stderr {
				t.Errorf("kcare-build %v: exit %d\nstdout %q\nstderr %q\nwant %d, %q, %q", args, code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
			got := sent()
			if ok := len(got) == 1 && got[0] == testPublishToken; ok != (tt.code == 0) || tt.code != 0 && len(got) != 0 {
				t.Errorf("the portal was sent keys %q", got)
			}
		})
	}
}
