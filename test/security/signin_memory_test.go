// Package security attacks a real `eportal serve` the way the attack run
// did, from the attacker's own loopback addresses, and checks each hole
// stays closed.
package security

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/testbin"
	"github.com/kcare/kcare/internal/trust"
)

// Bounds of the sign-in memory test.
const (
	webStartBound = 30 * time.Second // for eportal serve to answer /healthz
	signInBound   = 20 * time.Second // for one sign-in's answer
	rssLimit      = 1 << 30          // VmHWM the portal must stay under
	rssPoll       = 5 * time.Millisecond
)

// webPortal is a real eportal serve on 127.0.0.1, built from this tree,
// with an admin user.
type webPortal struct {
	url string
	cmd *exec.Cmd
	log bytes.Buffer
}

const webAdminPassword = "the admin's long password"

// startWebPortal builds eportal, prepares a data directory with a
// publisher key and an admin, and serves it on a free port of 127.0.0.1,
// with env added to its environment.
func startWebPortal(t *testing.T, env ...string) *webPortal {
	t.Helper()
	dir := t.TempDir()
	bin := testbin.Path(t, "cmd/eportal")
	data := filepath.Join(dir, "data")
	_, pub, err := trust.GenerateKey("kcare security test publisher", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(data, "publishers"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "publishers", "publisher.pub"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	add := exec.Command(bin, "user", "add", "admin", "--role", "admin", "--data", data)
	add.Stdin = strings.NewReader(webAdminPassword + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("eportal user add: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &webPortal{url: "http://" + addr}
	p.cmd = exec.Command(bin, "serve", "--data", data, "--listen", addr)
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	deadline := time.Now().Add(webStartBound)
	for {
		resp, err := http.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for eportal serve to answer: %v\n%s", webStartBound, err, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rssWatch follows a process's peak resident memory (VmHWM), and kills
// the process as soon as it passes limit, so a test of a broken build
// does not take the machine's memory.
type rssWatch struct {
	mu   sync.Mutex
	peak int64 // bytes
	over bool
	stop chan struct{}
	done chan struct{}
}

func watchRSS(p *os.Process, limit int64) *rssWatch {
	w := &rssWatch{stop: make(chan struct{}), done: make(chan struct{})}
	status := fmt.Sprintf("/proc/%d/status", p.Pid)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(rssPoll)
		defer tick.Stop()
		for {
			if hwm, err := readHWM(status); err == nil {
				w.mu.Lock()
				w.peak = max(w.peak, hwm)
				if hwm > limit && !w.over {
					w.over = true
					p.Kill()
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// end stops watching and returns the peak seen and whether it passed the
// limit.
func (w *rssWatch) end() (peak int64, over bool) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak, w.over
}

// readHWM reads VmHWM, in bytes, from a /proc/PID/status file.
func readHWM(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseHWM(b)
}

func parseHWM(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM line")
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip, with a cookie jar and no redirects followed.
func clientFrom(ip string) *http.Client {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{
		Jar:           jar,
		Timeout:       signInBound,
		Transport:     &http.Transport{DialContext: d.DialContext, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

var webCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signInAnswer is what a sign-in got back.
type signInAnswer struct {
	code       int
	retryAfter string
	err        error
}

// webSignIn opens the sign-in page and posts the form as a browser does.
func webSignIn(ctx context.Context, c *http.Client, base, user, password string) signInAnswer {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/admin/login", nil)
	resp, err := c.Do(req)
	if err != nil {
		return signInAnswer{err: err}
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := webCSRF.FindSubmatch(page)
	if m == nil {
		return signInAnswer{err: fmt.Errorf("sign-in page %d has no CSRF token", resp.StatusCode)}
	}
	form := url.Values{"csrf": {string(m[1])}, "user": {user}, "password": {password}}
	req, _ = http.NewRequestWithContext(ctx, "POST", base+"/admin/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = c.Do(req)
	if err != nil {
		return signInAnswer{err: err}
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return signInAnswer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
}

// TestSignInMemory: 64 parallel sign-ins, each from its own address,
// keep eportal's peak resident memory under 1 GiB; each is answered 401
// or 429 with Retry-After, and the admin signs in from 127.0.0.1 after.
func TestSignInMemory(t *testing.T) {
	p := startWebPortal(t)
	watch := watchRSS(p.cmd.Process, rssLimit)
	const n = 64
	answers := make([]signInAnswer, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			ip := fmt.Sprintf("127.0.0.%d", i+2)
			answers[i] = webSignIn(t.Context(), clientFrom(ip), p.url, "admin", fmt.Sprintf("guess %d", i))
		})
	}
	wg.Wait()
	took := time.Since(start)
	peak, over := watch.end()
	if over {
		t.Fatalf("eportal's peak RSS passed %d MiB during %d parallel sign-ins (VmHWM %d KiB); it was stopped", rssLimit>>20, n, peak>>10)
	}
	counts := map[string]int{}
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("sign-in %d: %v", i, a.err)
		case a.code == http.StatusUnauthorized && a.retryAfter == "":
			counts["401"]++
		case a.code == http.StatusTooManyRequests && a.retryAfter != "":
			counts["429"]++
		default:
			t.Errorf("sign-in %d: %d Retry-After=%q, want 401, or 429 with Retry-After", i, a.code, a.retryAfter)
		}
	}
	t.Logf("%d parallel sign-ins in %s: %d wrong password (hashed), %d refused busy; eportal VmHWM %d MiB",
		n, took.Round(time.Millisecond), counts["401"], counts["429"], peak>>20)
	if counts["401"] == 0 {
		t.Errorf("no sign-in was checked at all")
	}
	if a := webSignIn(t.Context(), clientFrom("127.0.0.1"), p.url, "admin", webAdminPassword); a.err != nil || a.code != http.StatusSeeOther {
		t.Errorf("admin from 127.0.0.1 after the burst: %d %v, want 303", a.code, a.err)
	}
}

func TestParseHWM(t *testing.T) {
	status := "Name:\teportal\nVmPeak:\t 2395596 kB\nVmHWM:\t  415232 kB\nVmRSS:\t  101376 kB\n"
	got, err := parseHWM([]byte(status))
	if err != nil || got != 415232<<10 {
		t.Errorf("parseHWM = %d, %v; want %d", got, err, 415232<<10)
	}
	if _, err := parseHWM([]byte("Name:\teportal\n")); err == nil {
		t.Error("parseHWM without a VmHWM line: no error")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}
