package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"text/template"
	"time"
)

// Bounds on haproxy's start and stop.
const (
	haproxyStartBound = 10 * time.Second
	haproxyStopBound  = 10 * time.Second
)

// haproxyConf balances the replicas round robin, checking each's /healthz
// five times a second so that a killed one is out within a fraction of a
// second; a request whose connection a replica refuses goes to another
// (retries, redispatch). A request a replica took and then died with gets
// 502, which the agent retries as it retries any 5xx.
var haproxyConf = template.Must(template.New("haproxy.cfg").Parse(`# loadgen's haproxy: eportal's replicas on 127.0.0.1, for the run only.
global
	maxconn 4096
defaults
	mode http
	timeout connect 2s
	timeout client 60s
	timeout server 60s
	retries 3
	option redispatch
frontend agents
	bind {{.Addr}}
	default_backend eportal
backend eportal
	balance roundrobin
	option httpchk GET /healthz
	http-check expect status 200
	default-server inter 200ms fall 1 rise 1
{{range $i, $addr := .Replicas}}	server replica{{$i}} {{$addr}} check
{{end}}`))

// findHAProxy returns the haproxy binary (Debian's package; installed by
// scripts/setup-debian.sh).
func findHAProxy() (string, error) {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy", nil
	}
	return "", errors.New("haproxy is not installed: apt-get install -y haproxy (scripts/setup-debian.sh installs it)")
}

// startHAProxy runs haproxy in the foreground in front of the replicas,
// its configuration in dir. The returned function stops it.
func startHAProxy(ctx context.Context, dir string, replicas []*replica) (url string, hp *proc, stop func(), err error) {
	bin, err := findHAProxy()
	if err != nil {
		return "", nil, nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "haproxy.cfg")
	f, err := os.Create(conf)
	if err != nil {
		return "", nil, nil, err
	}
	var addrs []string
	for _, r := range replicas {
		addrs = append(addrs, r.addr)
	}
	err = haproxyConf.Execute(f, struct {
		Addr     string
		Replicas []string
	}{addr, addrs})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", nil, nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "-c", "-f", conf).CombinedOutput(); err != nil {
		return "", nil, nil, fmt.Errorf("haproxy -c: %v\n%s", err, out)
	}
	hp, err = startProc("haproxy", exec.Command(bin, "-db", "-f", conf), filepath.Join(dir, "haproxy.log"))
	if err != nil {
		return "", nil, nil, err
	}
	url = "http://" + addr
	if err := hp.waitHTTP(ctx, url+"/healthz", haproxyStartBound); err != nil {
		hp.stop(syscall.SIGTERM, haproxyStopBound)
		return "", nil, nil, err
	}
	return url, hp, func() { hp.stop(syscall.SIGTERM, haproxyStopBound) }, nil
}
