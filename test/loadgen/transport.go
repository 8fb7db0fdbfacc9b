package main

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// requestBound bounds every request loadgen makes, retries included.
const requestBound = 60 * time.Second

// maxFailures stops a run early: past this many failures the figures
// mean nothing.
const maxFailures = 100

// maxSamples is how many distinct failure messages a report keeps.
const maxSamples = 10

// failureLog collects failures from all workers. It is safe for
// concurrent use.
type failureLog struct {
	mu      sync.Mutex
	failed  int
	retried int
	samples []string
}

func (l *failureLog) sample(msg string) {
	for _, s := range l.samples {
		if s == msg {
			return
		}
	}
	if len(l.samples) < maxSamples {
		l.samples = append(l.samples, msg)
	}
}

// fail records a failed request or check and returns the failures so far.
func (l *failureLog) fail(err error) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed++
	l.sample(err.Error())
	return l.failed + l.retried
}

// retry records an answer the client retried.
func (l *failureLog) retry(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retried++
	l.sample("retried: " + msg)
}

// total returns the failures so far.
func (l *failureLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed + l.retried
}

// report returns what was collected.
func (l *failureLog) report() Failures {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Failures{Failed: l.failed, Retried: l.retried, Samples: append([]string(nil), l.samples...),
		Aborted: l.failed+l.retried >= maxFailures}
}

// loopbackTransport sends requests to 127.0.0.1 only, and records in a
// failureLog every answer portalclient would retry (429, 5xx, a broken
// connection), which the retry would otherwise hide.
type loopbackTransport struct {
	base http.RoundTripper
	log  *failureLog
}

func (t *loopbackTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if h := req.URL.Hostname(); h != "127.0.0.1" {
		return nil, fmt.Errorf("refusing a request to %s: loadgen talks to 127.0.0.1 only", h)
	}
	resp, err := t.base.RoundTrip(req)
	switch {
	case err != nil && req.Context().Err() != nil:
		// Called off by loadgen itself (the run is over): no answer
		// was refused.
	case err != nil:
		t.log.retry(fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		t.log.retry(fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
	}
	return resp, err
}

// newHTTPClient returns a client for conns concurrent requests to one
// server on 127.0.0.1, keeping that many connections open, and never
// using a proxy.
func newHTTPClient(conns int, log *failureLog) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: 2 * conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Timeout: requestBound, Transport: &loopbackTransport{base: tr, log: log}}
}
