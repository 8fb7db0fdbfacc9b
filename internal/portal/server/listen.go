package server

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/portal/httpbound"
)

// The HTTP server's bounds. A request's headers must arrive within
// ReadHeaderTimeout and the whole request within ReadTimeout; routes that
// take large bodies (publishing) extend the read deadline after the caller
// is authenticated, by bodyRate. A response must be written within
// WriteTimeout plus the time its bytes take at minWriteRate, so a large
// bundle reaches a slow link while a client that stops reading is cut off.
const (
	ReadHeaderTimeout = httpbound.ReadHeaderTimeout
	ReadTimeout       = httpbound.ReadTimeout
	WriteTimeout      = httpbound.WriteTimeout
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 64 << 10

	minWriteRate = 64 << 10 // bytes per second a download must keep up
)

// Defaults of eportal serve's connection bounds.
const (
	DefaultMaxConns          = 4096
	DefaultMaxConnsPerSource = 256
)

// HTTPServer is the http.Server eportal serves h with: timeouts on every
// phase of a request, a bound on header size, and lim's bookkeeping of
// idle connections. Serve it on lim.Listen(ln).
func HTTPServer(h http.Handler, lim *ConnLimit) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnState:         lim.connState,
	}
}

// ConnLimit bounds the connections a listener holds open: at most Max in
// all and PerSource from one address (0: no bound by source). When a new
// connection comes at Max, the connection idle longest (a keep-alive
// connection waiting for its next request, which its client may reopen at
// no cost) is closed to make room; with none idle, Accept waits for a
// connection to close. A connection over PerSource is closed at once.
type ConnLimit struct {
	Max, PerSource int

	mu       sync.Mutex
	changed  *sync.Cond // signalled when a connection closes
	open     int
	bySource map[netip.Addr]int
	idle     map[*limitedConn]uint64 // idle connections, by the order they went idle
	seq      uint64
	closed   bool
}

// NewConnLimit returns a ConnLimit; max below 1 means DefaultMaxConns.
func NewConnLimit(maxConns, perSource int) *ConnLimit {
	if maxConns < 1 {
		maxConns = DefaultMaxConns
	}
	l := &ConnLimit{Max: maxConns, PerSource: perSource, bySource: map[netip.Addr]int{}, idle: map[*limitedConn]uint64{}}
	l.changed = sync.NewCond(&l.mu)
	return l
}

// Listen wraps ln so that it keeps to l's bounds.
func (l *ConnLimit) Listen(ln net.Listener) net.Listener { return &limitListener{Listener: ln, l: l} }

// Open reports how many connections are open.
func (l *ConnLimit) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

type limitListener struct {
	net.Listener
	l *ConnLimit
}

func (ll *limitListener) Accept() (net.Conn, error) {
	l := ll.l
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		lc, err := l.admit(c, src)
		if err != nil {
			return nil, err
		}
		if lc != nil {
			return lc, nil
		}
	}
}

func (ll *limitListener) Close() error {
	ll.l.mu.Lock()
	ll.l.closed = true
	ll.l.changed.Broadcast()
	ll.l.mu.Unlock()
	return ll.Listener.Close()
}

// admit takes a slot for c, making room by closing the connection idle
// longest or waiting for one to close. It closes c and returns nil when
// its source is over PerSource.
func (l *ConnLimit) admit(c net.Conn, src netip.Addr) (*limitedConn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.PerSource > 0 && l.bySource[src] >= l.PerSource {
		c.Close()
		return nil, nil
	}
	for l.open >= l.Max {
		if l.closed {
			c.Close()
			return nil, net.ErrClosed
		}
		if victim := l.oldestIdle(); victim != nil {
			delete(l.idle, victim)
			l.mu.Unlock()
			victim.Close() // takes l.mu to give back its slot
			l.mu.Lock()
			continue
		}
		l.changed.Wait()
	}
	l.open++
	l.bySource[src]++
	return &limitedConn{Conn: c, l: l, src: src}, nil
}

func (l *ConnLimit) oldestIdle() *limitedConn {
	var oldest *limitedConn
	var at uint64
	for c, seq := range l.idle {
		if oldest == nil || seq < at {
			oldest, at = c, seq
		}
	}
	return oldest
}

// connState is the http.Server's ConnState hook: it tracks which
// connections are idle.
func (l *ConnLimit) connState(c net.Conn, st http.ConnState) {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok { // a TLS connection
		c = nc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle && !lc.done {
		l.seq++
		l.idle[lc] = l.seq
	} else {
		delete(l.idle, lc)
	}
}

func (l *ConnLimit) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	delete(l.idle, c)
	l.open--
	if l.bySource[c.src]--; l.bySource[c.src] <= 0 {
		delete(l.bySource, c.src)
	}
	l.changed.Signal()
}

// limitedConn gives its slot back when closed.
type limitedConn struct {
	net.Conn
	l    *ConnLimit
	src  netip.Addr
	done bool // guarded by l.mu
}

// ReadFrom lets the HTTP server send a file with sendfile(2) on the
// connection beneath: net/http does so only through a connection that
// has ReadFrom.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.l.release(c)
	return err
}

// sourceOf is the address a connection counts against: the IPv4 address,
// or the /64 of an IPv6 one (a host gets a whole /64).
func sourceOf(a net.Addr) netip.Addr {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return sourceAddr(ap.Addr())
}

// sourceAddr is ip as a source: the IPv4 address, or the IPv6 /64.
func sourceAddr(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// fileReserve is how many open files the portal keeps for itself (the
// database, bundles, packages, its log) beside its connections.
const fileReserve = 128

// MaxConnsWithin returns max, lowered when needed so that max connections
// and fileReserve fit in the process's open file limit, and whether it
// was lowered.
func MaxConnsWithin(n int) (int, bool) {
	limit := openFileLimit()
	if limit <= 0 || n+fileReserve <= limit {
		return n, false
	}
	return max(limit-fileReserve, 16), true
}

// paced extends a response's write deadline as its bytes go out: a
// response may take WriteTimeout plus the time its bytes take at
// minWriteRate, so a large bundle reaches a slow link, and a client that
// stops reading is cut off.
type paced struct {
	http.ResponseWriter
	rc      *http.ResponseController
	start   time.Time
	written int64
}

func (p *paced) Write(b []byte) (int, error) {
	p.written += int64(len(b))
	p.rc.SetWriteDeadline(p.start.Add(WriteTimeout + time.Duration(p.written)*time.Second/minWriteRate))
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (p *paced) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// ReadFrom sends r's bytes as the connection sends a file, with
// sendfile(2) and no copy through the process, when r is the
// io.LimitedReader around a file that http.ServeContent hands over: the
// deadline is then set once for all of its N bytes. Another reader is
// copied through Write.
func (p *paced) ReadFrom(r io.Reader) (int64, error) {
	lr, ok := r.(*io.LimitedReader)
	rf, canSend := p.ResponseWriter.(io.ReaderFrom)
	if !ok || !canSend {
		return io.Copy(writerOnly{p}, r)
	}
	p.rc.SetWriteDeadline(p.start.Add(WriteTimeout + time.Duration(p.written+lr.N)*time.Second/minWriteRate))
	n, err := rf.ReadFrom(r)
	p.written += n
	return n, err
}

// writerOnly hides every method of a writer but Write, so that io.Copy
// does not come back to its ReadFrom.
type writerOnly struct{ io.Writer }
