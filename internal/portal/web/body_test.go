package web_test

import (
	"fmt"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/web"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// countingBody is a request body that counts the bytes the server reads.
type countingBody struct {
	r io.Reader
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return nil }

// filler is n bytes of 'x', made as they are read.
type filler struct{ n int64 }

func (f *filler) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), f.n)]
	for i := range p {
		p[i] = 'x'
	}
	f.n -= int64(len(p))
	return len(p), nil
}

const uploadBoundary = "kcare-test-boundary"

// uploadBody is a multipart/form-data patch upload: the fields in order,
// then a bundle of size bytes, then the signature.
func uploadBody(fields [][2]string, size int64) io.Reader {
	var head strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&head, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", uploadBoundary, f[0], f[1])
	}
	fmt.Fprintf(&head, "--%s\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"l1.kcp\"\r\nContent-Type: application/octet-stream\r\n\r\n", uploadBoundary)
	tail := fmt.Sprintf("\r\n--%s\r\nContent-Disposition: form-data; name=\"signature\"; filename=\"l1.kcp.sig\"\r\n\r\nsig\r\n--%s--\r\n", uploadBoundary, uploadBoundary)
	return io.MultiReader(strings.NewReader(head.String()), &filler{n: size}, strings.NewReader(tail))
}

// emptyDir reports the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestUploadUnauthenticated: a 64 MiB patch upload without a session is
// answered 401 having read none of it, and nothing is spooled to disk.
func TestUploadUnauthenticated(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	u := newTestUI(t, web.Config{})
	b := &countingBody{r: uploadBody([][2]string{{"csrf", "forged"}}, 64<<20)}
	req := httptest.NewRequest("POST", "/admin/patches", nil)
	req.Body = b
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+uploadBoundary)
	resp := u.do(req, "127.0.0.2")
	if resp.StatusCode != http.StatusUnauthorized || b.n.Load() > 0 {
		t.Errorf("unauthenticated 64 MiB upload: %d having read %d bytes, want 401 having read none", resp.StatusCode, b.n.Load())
	}
	if names := dirNames(t, tmp); len(names) != 0 {
		t.Errorf("unauthenticated upload left files in TMPDIR: %v", names)
	}
}

// fill turns a route pattern into a path.
func fill(pattern string) string {
	p := strings.ReplaceAll(pattern, "{$}", "")
	for strings.Contains(p, "{") {
		i, j := strings.Index(p, "{"), strings.Index(p, "}")
		p = p[:i] + "x" + p[j+1:]
	}
	return p
}

// routeRequest is a request for rt whose body is its form with the CSRF
// token csrf first, padded to size bytes in all, counting what is read.
func routeRequest(rt web.Route, csrf string, size int64) (*http.Request, *countingBody) {
	var r io.Reader
	ct := "application/x-www-form-urlencoded"
	if rt.Upload {
		ct = "multipart/form-data; boundary=" + uploadBoundary
		head, _ := io.ReadAll(uploadBody([][2]string{{"csrf", csrf}}, 0))
		r = uploadBody([][2]string{{"csrf", csrf}}, max(0, size-int64(len(head))))
	} else {
		head := "csrf=" + csrf + "&pad="
		r = io.MultiReader(strings.NewReader(head), &filler{n: max(0, size-int64(len(head)))})
	}
	b := &countingBody{r: r}
	req := httptest.NewRequest(rt.Method, fill(rt.Path), nil)
	req.Body = b
	req.Header.Set("Content-Type", ct)
	return req, b
}

// TestRouteTable: every change is a POST with a body limit that needs
// the admin role, but signing in (public) and out (any user); a page is
// a GET, whose body is never read.
func TestRouteTable(t *testing.T) {
	for _, rt := range web.Routes() {
		var want string
		switch {
		case rt.Method == "GET":
			want = "MaxBody 0"
		case rt.Path == "/admin/login":
			want = "public, MaxBody > 0"
		case rt.Path == "/admin/logout":
			want = "reader, MaxBody > 0"
		default:
			want = "admin, MaxBody > 0"
		}
		got := fmt.Sprintf("MaxBody %d", rt.MaxBody)
		switch {
		case rt.Method == "GET" && rt.MaxBody == 0:
			got = "MaxBody 0"
		case rt.Method == "POST" && rt.MaxBody > 0:
			got = rt.Access.String() + ", MaxBody > 0"
		}
		if got != want {
			t.Errorf("%s %s: %s, want %s", rt.Method, rt.Path, got, want)
		}
		if rt.Upload != (rt.Method == "POST" && rt.Path == "/admin/patches") {
			t.Errorf("%s %s: Upload %v", rt.Method, rt.Path, rt.Upload)
		}
	}
}

// TestRoutesAuthBeforeBody walks the route table with a 64 MiB body: no
// route reads any of it without a session, nor for a read-only user where
// it needs an admin; nothing is written to TMPDIR.
func TestRoutesAuthBeforeBody(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	u := newTestUI(t, web.Config{})
	bob, bobCSRF := u.session("bob", bobPassword)
	n := 0
	for _, rt := range web.Routes() {
		if rt.Access == web.Public {
			continue
		}
		n++
		req, b := routeRequest(rt, "forged", 64<<20)
		resp := u.do(req, "127.0.0.2")
		want := http.StatusUnauthorized
		if rt.Method == "GET" {
			want = http.StatusSeeOther
		}
		if resp.StatusCode != want || b.n.Load() != 0 {
			t.Errorf("%s %s without a session: %d having read %d bytes, want %d having read none", rt.Method, rt.Path, resp.StatusCode, b.n.Load(), want)
		}
		if rt.Access != web.Admin {
			continue
		}
		req, b = routeRequest(rt, bobCSRF, 64<<20)
		req.AddCookie(bob)
		resp = u.do(req, "127.0.0.1")
		if resp.StatusCode != http.StatusForbidden || b.n.Load() != 0 {
			t.Errorf("%s %s as a read-only user: %d having read %d bytes, want 403 having read none", rt.Method, rt.Path, resp.StatusCode, b.n.Load())
		}
	}
	if n < 25 {
		t.Errorf("only %d routes walked", n)
	}
	// A page's body is never read, even the sign-in page's.
	req, b := routeRequest(web.Route{Method: "GET", Path: "/admin/login", Upload: true}, "x", 64<<20)
	if resp := u.do(req, "127.0.0.2"); resp.StatusCode != http.StatusOK || b.n.Load() > 1 {
		t.Errorf("GET /admin/login with a 64 MiB multipart body: %d having read %d bytes, want 200 having read none", resp.StatusCode, b.n.Load())
	}
	if names := dirNames(t, tmp); len(names) != 0 {
		t.Errorf("files left in TMPDIR: %v", names)
	}
}

// TestRouteBodyLimits: each POST takes a body of its limit and refuses
// one byte more with 413, having read no more than that.
func TestRouteBodyLimits(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	u := newTestUI(t, web.Config{})
	alice, csrf := u.session("alice", alicePassword)
	for _, rt := range web.Routes() {
		if rt.Method != "POST" {
			continue
		}
		req, b := routeRequest(rt, csrf, rt.MaxBody+1)
		req.AddCookie(alice)
		resp := u.do(req, "127.0.0.1")
		if resp.StatusCode != http.StatusRequestEntityTooLarge || b.n.Load() > rt.MaxBody+1 {
			t.Errorf("%s %s with %d bytes: %d having read %d, want 413 having read at most %d", rt.Method, rt.Path, rt.MaxBody+1, resp.StatusCode, b.n.Load(), rt.MaxBody+1)
		}
		if rt.Upload || rt.Path == "/admin/logout" { // the upload below; signing out would end the session
			continue
		}
		req, _ = routeRequest(rt, csrf, rt.MaxBody)
		req.AddCookie(alice)
		if resp := u.do(req, "127.0.0.1"); resp.StatusCode == http.StatusRequestEntityTooLarge || resp.StatusCode == http.StatusBadRequest && strings.Contains(body(resp), "bad form") {
			t.Errorf("%s %s with %d bytes, its limit: %d", rt.Method, rt.Path, rt.MaxBody, resp.StatusCode)
		}
	}
	// The largest bundle is read whole and reaches verification, which
	// refuses its signature ("sig").
	req, _ := routeRequest(web.Route{Method: "POST", Path: "/admin/patches", Upload: true}, csrf, 0)
	whole := &countingBody{r: uploadBody([][2]string{{"csrf", csrf}, {"channel", "stable"}}, bundle.MaxBundleSize)}
	req.Body = whole
	req.AddCookie(alice)
	resp := u.do(req, "127.0.0.1")
	if msg := body(resp); resp.StatusCode != http.StatusBadRequest || whole.n.Load() < bundle.MaxBundleSize || !strings.Contains(msg, "bundle refused: ") {
		t.Errorf("upload of a %d-byte bundle: %d having read %d bytes, want 400 \"bundle refused: …\" having read it all", bundle.MaxBundleSize, resp.StatusCode, whole.n.Load())
	}
	if names := dirNames(t, tmp); len(names) != 0 {
		t.Errorf("files left in TMPDIR: %v", names)
	}
}

// TestUploadWrongCSRF: an admin's upload with a wrong CSRF token is
// refused having read no more than the token's part.
func TestUploadWrongCSRF(t *testing.T) {
	u := newTestUI(t, web.Config{})
	alice, _ := u.session("alice", alicePassword)
	rt := web.Route{Method: "POST", Path: "/admin/patches", Upload: true}
	for _, fields := range [][][2]string{{{"csrf", "forged"}}, {{"channel", "stable"}, {"csrf", "forged"}}, {{"csrf", strings.Repeat("x", 64<<10)}}} {
		req, _ := routeRequest(rt, "", 0)
		b := &countingBody{r: uploadBody(fields, 64<<20)}
		req.Body = b
		req.AddCookie(alice)
		resp := u.do(req, "127.0.0.1")
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusRequestEntityTooLarge || b.n.Load() > 16<<10 {
			t.Errorf("upload with fields %.40q then 64 MiB: %d having read %d bytes, want 403 or 413 having read at most 16 KiB", fields, resp.StatusCode, b.n.Load())
		}
	}
}
