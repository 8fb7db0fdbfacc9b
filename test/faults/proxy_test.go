package faults_test

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxyMode says what cutProxy does to the next bundle download.
type proxyMode int

const (
	passThrough proxyMode = iota
	cutOnce               // cut the next bundle in the middle
	cutAlways             // cut every bundle in the middle
	restartOnce           // send half of the next bundle, cut, restart the portal
)

// cutProxy stands between the guest and eportal, on the host's loopback
// (the guest reaches it at 10.0.2.2). It passes every request on, and cuts
// bundle downloads (GET /blobs/...) in the middle as its mode says: as a
// network dropping the connection, or as a portal restarting while the
// agent downloads (the portal's answer stops half-way, and the portal is
// down until it has restarted).
type cutProxy struct {
	upstream string
	restart  func() // restarts the portal
	client   *http.Client
	port     int

	mu       sync.Mutex
	mode     proxyMode
	blobs    int // bundle requests seen
	cuts     int // bundle answers cut
	restarts int
}

func startProxy(t *testing.T, upstream string, restart func()) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{upstream: upstream, restart: restart, port: l.Addr().(*net.TCPAddr).Port,
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: nil}}}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

// guestURL is the proxy's address from the guest.
func (p *cutProxy) guestURL() string { return "http://10.0.2.2:" + strconv.Itoa(p.port) }

func (p *cutProxy) set(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode, p.blobs, p.cuts, p.restarts = m, 0, 0, 0
}

func (p *cutProxy) counts() (blobs, cuts, restarts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blobs, p.cuts, p.restarts
}

func (p *cutProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mode := passThrough
	if strings.HasPrefix(r.URL.Path, "/blobs/") {
		p.mu.Lock()
		p.blobs++
		mode = p.mode
		if mode == cutOnce || mode == restartOnce {
			p.mode = passThrough
		}
		if mode != passThrough {
			p.cuts++
		}
		p.mu.Unlock()
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req)
	if err != nil {
		// The portal is down: as a load balancer in front of it answers.
		http.Error(w, "portal down: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	if mode == passThrough {
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	w.Write(body[:len(body)/2])
	http.NewResponseController(w).Flush()
	// The answer stops here, as where the network or the portal went down.
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
	if mode == restartOnce {
		p.restart()
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}
