package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// dialBound bounds each connect and answer in the listener tests.
const dialBound = 10 * time.Second

// keepAlive opens a connection from src, makes one request and returns
// the connection, open and idle, and the answer's status (0: none).
func keepAlive(t *testing.T, addr, src string) (net.Conn, int) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: dialBound}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(dialBound))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: portal\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	return c, resp.StatusCode
}

// TestConnLimit: a source over PerSource is turned away, and at Max a new
// client gets the place of the connection idle longest.
func TestConnLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := NewConnLimit(3, 2)
	hs := HTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), lim)
	go hs.Serve(lim.Listen(ln))
	t.Cleanup(func() { hs.Close() })
	addr := ln.Addr().String()

	first, code1 := keepAlive(t, addr, "127.0.0.2")
	_, code2 := keepAlive(t, addr, "127.0.0.2")
	if code1 != 200 || code2 != 200 {
		t.Fatalf("two connections from 127.0.0.2: %d %d, want 200 200", code1, code2)
	}
	if _, code := keepAlive(t, addr, "127.0.0.2"); code != 0 {
		t.Errorf("a third connection from 127.0.0.2 (PerSource 2): answered %d, want closed", code)
	}
	if _, code := keepAlive(t, addr, "127.0.0.3"); code != 200 {
		t.Fatalf("a connection from 127.0.0.3: %d, want 200", code)
	}
	// Three open, all idle: the client on 127.0.0.1 takes the place of the
	// one idle longest, 127.0.0.2's first.
	c := &http.Client{Timeout: dialBound, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET from 127.0.0.1 at the bound: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET from 127.0.0.1 at the bound: %d", resp.StatusCode)
	}
	first.SetReadDeadline(time.Now().Add(dialBound))
	if n, err := first.Read(make([]byte, 1)); err == nil {
		t.Errorf("the connection idle longest is still open (read %d bytes)", n)
	}
	if n := lim.Open(); n > 3 {
		t.Errorf("%d connections open, Max 3", n)
	}
}

// TestMaxConnsWithin: the bound fits the open file limit.
func TestMaxConnsWithin(t *testing.T) {
	limit := openFileLimit()
	if limit <= 0 {
		t.Fatal("no open file limit to test against")
	}
	if got, lowered := MaxConnsWithin(limit); !lowered || got != max(limit-fileReserve, 16) {
		t.Errorf("MaxConnsWithin(%d) = %d, %v; want %d, true", limit, got, lowered, max(limit-fileReserve, 16))
	}
	if got, lowered := MaxConnsWithin(10); lowered || got != 10 {
		t.Errorf("MaxConnsWithin(10) = %d, %v; want 10, false", got, lowered)
	}
}
