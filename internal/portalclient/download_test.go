package portalclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blobServer serves data at /blobs/x, and for the first cuts requests
// writes only half of it and then drops the connection.
type blobServer struct {
	data     []byte
	cuts     int32
	requests atomic.Int32
}

func (s *blobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.requests.Add(1)
	w.Header().Set("Content-Length", strconv.Itoa(len(s.data)))
	if n > s.cuts {
		w.Write(s.data)
		return
	}
	w.Write(s.data[:len(s.data)/2])
	w.(http.Flusher).Flush()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func randomBlob(t *testing.T) []byte {
	b := make([]byte, 300<<10)
	rand.Read(b)
	return b
}

// serve serves h on l until the test ends or stop is called.
func serve(t *testing.T, l net.Listener, h http.Handler) (stop func()) {
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { srv.Close(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testClient(url string) *Client {
	return &Client{PatchServer: url, Backoff: 50 * time.Millisecond,
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}}
}

// TestDownloadCutMidBundle: a connection cut in the middle of a bundle is
// retried, and the download completes with every byte.
func TestDownloadCutMidBundle(t *testing.T) {
	s := &blobServer{data: randomBlob(t), cuts: 1}
	l := listen(t, "127.0.0.1:0")
	serve(t, l, s)
	got, err := testClient("http://"+l.Addr().String()).Download(context.Background(), "/blobs/x", int64(len(s.data)), nil)
	if err != nil {
		t.Fatalf("Download with the first connection cut: %v", err)
	}
	if !bytes.Equal(got, s.data) {
		t.Errorf("Download returned %d bytes, not the %d served", len(got), len(s.data))
	}
	if n := s.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

// TestDownloadPortalRestart: the portal goes away in the middle of a
// bundle and comes back on the same address a moment later; the download
// completes.
func TestDownloadPortalRestart(t *testing.T) {
	data := randomBlob(t)
	l := listen(t, "127.0.0.1:0")
	addr := l.Addr().String()
	var stop func()
	cut := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:len(data)/3])
		w.(http.Flusher).Flush()
		go stop() // the portal stops, dropping this connection
		<-r.Context().Done()
	})
	stop = serve(t, l, cut)
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(30 * time.Millisecond)
		for i := 0; i < 100; i++ {
			if l, err := net.Listen("tcp", addr); err == nil {
				serve(t, l, &blobServer{data: data})
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	got, err := testClient("http://"+addr).Download(context.Background(), "/blobs/x", int64(len(data)), nil)
	<-restarted
	if err != nil {
		t.Fatalf("Download across a portal restart: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("Download returned %d bytes, not the %d served", len(got), len(data))
	}
}

// TestDownloadGivesUp: a bundle cut every time fails after a bounded
// number of attempts, saying how many, as the portal being unreachable.
func TestDownloadGivesUp(t *testing.T) {
	s := &blobServer{data: randomBlob(t), cuts: 1000}
	l := listen(t, "127.0.0.1:0")
	serve(t, l, s)
	_, err := testClient("http://"+l.Addr().String()).Download(context.Background(), "/blobs/x", int64(len(s.data)), nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Download cut every time = %v, want ErrUnreachable", err)
	}
	if n := s.requests.Load(); n != retries {
		t.Errorf("%d requests, want %d", n, retries)
	}
	want := "patch server unreachable: download /blobs/x: cut off after 153600 of 307200 bytes, 3 times: unexpected EOF"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// TestRegisterNotRepeatedAfterCut: a registration whose answer is lost
// after the portal took it (the portal killed between its commit and its
// answer) is not sent again, which would register the server twice; it
// fails as the portal being unreachable. A registration the portal never
// received (connection refused) is sent again.
func TestRegisterNotRepeatedAfterCut(t *testing.T) {
	var got atomic.Int32
	l := listen(t, "127.0.0.1:0")
	serve(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if got.Add(1) == 1 {
			// Taken, and the answer lost.
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"server_id":"srv-2","server_secret":"s"}`))
	}))
	c := testClient("http://" + l.Addr().String())
	_, _, err := c.Register(context.Background(), "key", "host")
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("Register with the answer lost = %v, want ErrUnreachable", err)
	}
	if n := got.Load(); n != 1 {
		t.Errorf("the portal received %d registrations, want 1", n)
	}

	// Nothing listens yet: refused, and sent again once the portal is up.
	addr := listen(t, "127.0.0.1:0")
	a := addr.Addr().String()
	addr.Close()
	var later atomic.Int32
	go func() {
		time.Sleep(20 * time.Millisecond)
		if l, err := net.Listen("tcp", a); err == nil {
			serve(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				later.Add(1)
				w.Write([]byte(`{"server_id":"srv-3","server_secret":"s"}`))
			}))
		}
	}()
	id, _, err := testClient("http://"+a).Register(context.Background(), "key", "host")
	if err != nil || id != "srv-3" || later.Load() != 1 {
		t.Errorf("Register while the portal starts = %q, %v, %d requests; want srv-3, one request", id, err, later.Load())
	}
}
