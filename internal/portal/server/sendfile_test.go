package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
)

// countingConn counts the bytes a connection sends by Write and by
// ReadFrom, the call through which the runtime sends a file with
// sendfile(2).
type countingConn struct {
	*net.TCPConn
	written, sentFrom *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

func (c countingConn) ReadFrom(r io.Reader) (int64, error) {
	n, err := c.TCPConn.ReadFrom(r)
	c.sentFrom.Add(n)
	return n, err
}

type countingListener struct {
	net.Listener
	written, sentFrom atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c.(*net.TCPConn), &l.written, &l.sentFrom}, nil
}

// TestBlobSendfile: a bundle downloaded whole from eportal's server, on
// its connection bounds as eportal serve listens, leaves through the
// connection's ReadFrom (sendfile), not through the process's writes: only
// the headers are written.
func TestBlobSendfile(t *testing.T) {
	p := newPortal(t, "sqlite")
	data, sig := bundleFor(t, publisher, 1)
	if _, err := p.srv.Core().Publish(context.Background(), core.CLI, data, sig, core.PublishOptions{Released: p.now}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	lim := server.NewConnLimit(0, 0)
	hs := server.HTTPServer(p.srv.Handler(), lim)
	go hs.Serve(lim.Listen(cl))
	defer hs.Close()

	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + ln.Addr().String() + "/blobs/sha256/" + bundle.Digest(data))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != string(data) {
		t.Fatalf("GET the bundle: %s, %d bytes; want 200 and its %d bytes", resp.Status, len(body), len(data))
	}
	for k, want := range map[string]string{"Content-Length": "3584", "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
		"ETag": `"sha256:` + bundle.Digest(data) + `"`, "Cache-Control": "public, max-age=31536000, immutable"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if resp.Header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified")
	}
	if sent, written := cl.sentFrom.Load(), cl.written.Load(); sent != int64(len(data)) || written > 1024 {
		t.Errorf("the connection sent %d bytes by ReadFrom and wrote %d; want all %d by ReadFrom and only the headers written",
			sent, written, len(data))
	}
}
