package cli

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
)

// publishStatus uploads a bundle and answers the status and body.
func publishStatus(t *testing.T, url, token string, data, sig []byte) (int, string) {
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeEmptyDataDir: a newcomer's first run. eportal serve on a new,
// empty data directory starts and answers, says in its log how to add a
// publisher key, and refuses to publish until one is added with eportal
// publisher add, which the running portal then trusts without a restart.
func TestServeEmptyDataDir(t *testing.T) {
	data := filepath.Join(t.TempDir(), "new")
	p := startServe(t, "--data", data)
	base := "http://" + p.Addr
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %s, want 200", resp.Status)
	}
	if log := p.Log(); !strings.Contains(log, "eportal publisher add") {
		t.Errorf("the log does not say how to add a publisher key:\n%s", log)
	}

	token := adminToken(t, data)
	signer := bundletest.Signer("kcare newcomer test publisher")
	data1, sig1 := bundletest.Bundle(t, signer, 1, bundletest.Options{})
	code, body := publishStatus(t, base, token, data1, sig1)
	if code != http.StatusConflict || !strings.Contains(body, "no publisher key is trusted yet") || !strings.Contains(body, "eportal publisher add") {
		t.Errorf("publish before any publisher key: %d %s, want 409 naming eportal publisher add", code, body)
	}

	pub, err := signer.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(t.TempDir(), "publisher.pub")
	os.WriteFile(pubFile, pub, 0o644)
	stdout, stderr, exit := run(t, "", "publisher", "add", pubFile, "--data", data)
	fp := signer.Fingerprint()
	if exit != 0 || !strings.Contains(stdout, fp) {
		t.Fatalf("publisher add: exit %d\n%s%s\nwant exit 0 printing %s", exit, stdout, stderr, fp)
	}
	if code, body := publishStatus(t, base, token, data1, sig1); code != http.StatusOK {
		t.Errorf("publish after publisher add: %d %s, want 200", code, body)
	}
	stdout, _, exit = run(t, "", "publisher", "list", "--data", data)
	if exit != 0 || !strings.Contains(stdout, fp) || !strings.Contains(stdout, "kcare newcomer test publisher") {
		t.Errorf("publisher list: exit %d\n%s", exit, stdout)
	}
	if _, stderr, exit := run(t, "", "publisher", "remove", fp, "--data", data); exit != 0 {
		t.Fatalf("publisher remove: exit %d %s", exit, stderr)
	}
	data2, sig2 := bundletest.Bundle(t, signer, 2, bundletest.Options{Released: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)})
	if code, body := publishStatus(t, base, token, data2, sig2); code != http.StatusConflict {
		t.Errorf("publish after publisher remove: %d %s, want 409", code, body)
	}
}
