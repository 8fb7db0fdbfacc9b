package portalserve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portalclient"
)

// Bounds of the resource test's waits.
const (
	attackDialBound = 10 * time.Second // one attacker's connect and first answer
	agentCycleBound = 2 * time.Minute  // the whole agent cycle
)

// idleConns is how many idle keep-alive connections the attackers hold.
const idleConns = 2000

// portalFileLimit is the file limit eportal runs with in the resource
// test: 1024, the soft and hard limit a process gets where nothing raises
// it (a shell, a container, an init without LimitNOFILE).
const portalFileLimit = 1024

// raiseFileLimit lets the test process hold the attackers' connections.
func raiseFileLimit(t *testing.T, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	if lim.Max < want {
		t.Fatalf("the test needs %d open files and the hard limit is %d: raise it (ulimit -Hn)", want, lim.Max)
	}
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise the open file limit to %d: %v", want, err)
	}
}

// holdIdle opens a keep-alive connection from src, makes one request on
// it and leaves it open and idle. It reports whether the portal answered.
func holdIdle(url, src string) (net.Conn, bool) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: attackDialBound}
	c, err := d.Dial("tcp", url[len("http://"):])
	if err != nil {
		return nil, false
	}
	c.SetDeadline(time.Now().Add(attackDialBound))
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: portal\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, false
	}
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	return c, resp.StatusCode == 200
}

// slowBody starts a request from src that declares a body and sends it
// one byte at a time until stop is closed.
func slowBody(url, src, path string, length int, stop <-chan struct{}) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: attackDialBound}
	c, err := d.Dial("tcp", url[len("http://"):])
	if err != nil {
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: portal\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\nkey=", path, length)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}
}

// TestIdleAndSlowClientsDoNotStopAgents: while attackers on 127.0.0.2 and
// up hold 2,000 idle keep-alive connections and send bodies one byte at a
// time, an agent on 127.0.0.1 registers, fetches its index and bundle and
// checks in. eportal runs with a file limit of 1024, so it cannot simply
// keep every connection open.
func TestIdleAndSlowClientsDoNotStopAgents(t *testing.T) {
	raiseFileLimit(t, idleConns+1024)
	p := newPortal(t)
	token := p.adminToken()
	p.eportal("", "key", "add", "--key", "k-resource-test", "--note", "resource test")
	p.start(fmt.Sprintf("ulimit -n %d &&", portalFileLimit))
	p.publish(token, 1)

	// The slow bodies: registrations and publishes that never finish.
	stop := make(chan struct{})
	var slow sync.WaitGroup
	for i := 0; i < 20; i++ {
		slow.Add(1)
		path := "/admin/api/register"
		if i%2 == 1 {
			path = "/api/v1/publish"
		}
		go func() {
			defer slow.Done()
			slowBody(p.url, "127.0.0.10", path, 60000, stop)
		}()
	}
	defer func() { close(stop); slow.Wait() }()

	// The idle connections, from 127.0.0.2 to 127.0.0.9.
	var (
		mu       sync.Mutex
		held     []net.Conn
		answered atomic.Int64
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= idleConns {
					return
				}
				c, ok := holdIdle(p.url, fmt.Sprintf("127.0.0.%d", 2+i%8))
				if ok {
					answered.Add(1)
				}
				if c != nil {
					mu.Lock()
					held = append(held, c)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("attackers opened %d connections, %d answered", len(held), answered.Load())
	if answered.Load() < portalFileLimit/2 {
		t.Fatalf("only %d of the attackers' requests were answered; the attack did not take place", answered.Load())
	}

	// The agent's cycle, from 127.0.0.1.
	ctx, cancel := context.WithTimeout(context.Background(), agentCycleBound)
	defer cancel()
	c := &portalclient.Client{PatchServer: p.url, HTTP: from("127.0.0.1"), Backoff: 100 * time.Millisecond}
	if err := agentCycle(ctx, c, p); err != nil {
		t.Fatalf("agent cycle under attack: %v", err)
	}
}

// agentCycle registers, fetches and verifies the index, downloads and
// checks the bundle, and checks in.
func agentCycle(ctx context.Context, c *portalclient.Client, p *portal) error {
	id, secret, err := c.Register(ctx, "k-resource-test", "web1")
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	c.ServerID, c.Secret = id, secret
	body, sig, err := c.Index(ctx, fakekernel.BuildID, "", "")
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	v := &index.Verifier{Keys: p.portalKeyring(), BuildID: fakekernel.BuildID}
	idx, err := v.Verify(body, sig)
	if err != nil {
		return fmt.Errorf("verify index: %w", err)
	}
	if idx.Level == nil || idx.Level.Level != 1 {
		return errors.New("index offers no level 1")
	}
	data, err := c.Download(ctx, idx.Level.URL, idx.Level.Size, nil)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if d := bundle.Digest(data); d != idx.Level.Digest {
		return fmt.Errorf("bundle digest %s, index says %s", d, idx.Level.Digest)
	}
	ci := apitype.CheckIn{Hostname: "web1", Release: fakekernel.Release, BuildID: fakekernel.BuildID,
		KernelID: kernel.KernelID(fakekernel.Version), Level: 1, EffectiveRelease: "6.1.0-56.kcare1-amd64", Result: "ok", AgentVersion: "0.1.0"}
	if err := c.CheckIn(ctx, ci); err != nil {
		return fmt.Errorf("check-in: %w", err)
	}
	return nil
}
