package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/portalclient"
)

// Bounds on nginx's start and stop.
const (
	nginxStartBound = 10 * time.Second
	nginxStopBound  = 10 * time.Second
)

// nginxConf serves DIR/blobs/sha256/DIGEST at /blobs/sha256/DIGEST, as
// eportal does, with sendfile, everything else under DIR.
var nginxConf = template.Must(template.New("nginx.conf").Parse(`# loadgen's nginx: one file, on 127.0.0.1, for the run only.
worker_processes auto;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events {
	worker_connections 1024;
}
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	default_type application/octet-stream;
	client_body_temp_path {{.Dir}}/client_body;
	proxy_temp_path {{.Dir}}/proxy;
	fastcgi_temp_path {{.Dir}}/fastcgi;
	uwsgi_temp_path {{.Dir}}/uwsgi;
	scgi_temp_path {{.Dir}}/scgi;
	server {
		listen {{.Addr}};
		root {{.Dir}}/www;
		location /blobs/sha256/ {
			add_header Cache-Control "public, max-age=31536000, immutable";
		}
	}
}
`))

// findNginx returns the nginx binary, installing the Debian package when
// it is missing and loadgen runs as root.
func findNginx(ctx context.Context, logf func(string, ...any)) (string, error) {
	look := func() (string, error) {
		if p, err := exec.LookPath("nginx"); err == nil {
			return p, nil
		}
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			return "/usr/sbin/nginx", nil
		}
		return "", errors.New("nginx not found")
	}
	if p, err := look(); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("nginx is not installed: install it (apt-get install -y nginx) or run loadgen as root to have it installed")
	}
	logf("installing nginx (apt-get install -y nginx)")
	install := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "nginx")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd.Run()
	}
	if err := install(); err != nil {
		logf("apt-get install failed (%v); updating the package lists and trying again", err)
		cmd := exec.CommandContext(ctx, "apt-get", "update", "-q")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("apt-get update: %w", err)
		}
		if err := install(); err != nil {
			return "", fmt.Errorf("apt-get install -y nginx: %w", err)
		}
	}
	return look()
}

// startNginx runs nginx in the foreground with a configuration of its own
// in a new temporary directory, serving the file at blobPath under its
// digest. The returned function stops nginx and removes the directory.
func startNginx(ctx context.Context, bin, blobPath, digest, cpus string) (url string, np *proc, stop func(), err error) {
	dir, err := os.MkdirTemp("", "kcare-loadgen-nginx-")
	if err != nil {
		return "", nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	// nginx's workers may run as another user (nobody when started as
	// root): let them in.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", nil, nil, err
	}
	www := filepath.Join(dir, "www", "blobs", "sha256")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return "", nil, nil, err
	}
	if err := copyFile(blobPath, filepath.Join(www, digest)); err != nil {
		return "", nil, nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "nginx.conf")
	f, err := os.Create(conf)
	if err != nil {
		return "", nil, nil, err
	}
	err = nginxConf.Execute(f, struct{ Dir, Addr string }{dir, addr})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", nil, nil, err
	}
	cmd := onCPUs(exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf, "-g", "daemon off;"), cpus)
	p, err := startProc("nginx", cmd, filepath.Join(dir, "nginx.out"))
	if err != nil {
		return "", nil, nil, err
	}
	cleanup = func() {
		p.stop(syscall.SIGTERM, nginxStopBound)
		os.RemoveAll(dir)
	}
	url = "http://" + addr
	if err := p.waitHTTP(ctx, url+index.BlobPath(digest), nginxStartBound); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return "", nil, nil, fmt.Errorf("%w\n%s", err, b)
	}
	return url, p, cleanup, nil
}

// copyFile copies src to dst, readable by all: the blob in eportal's
// data directory is readable by its owner only, and nginx's workers run
// as another user.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// measureDownloads has conc workers GET the bundle at base+path for d,
// as the agent downloads it, checking every body's sha256.
func measureDownloads(ctx context.Context, server string, sp *proc, base, digest string, size int64, conc int, d time.Duration) Throughput {
	fails := &failureLog{}
	hc := newHTTPClient(conc, fails)
	defer hc.CloseIdleConnections()
	c := &portalclient.Client{PatchServer: base, HTTP: hc, UserAgent: userAgent, Backoff: retryBackoff}
	path := index.BlobPath(digest)
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	cpu := startCPU(false, sp)
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			for time.Since(start) < d && ctx.Err() == nil && fails.total() < maxFailures {
				t := time.Now()
				data, err := c.Download(ctx, path, size, nil)
				if err == nil && (int64(len(data)) != size || bundle.Digest(data) != digest) {
					err = fmt.Errorf("GET %s: got %d bytes with sha256 %s", path, len(data), bundle.Digest(data))
				}
				if err != nil {
					if ctx.Err() == nil {
						fails.fail(err)
					}
					continue
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	usage := cpu()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	n := len(all)
	return Throughput{
		Server:            server,
		Requests:          n,
		ElapsedSeconds:    round2(elapsed.Seconds()),
		RequestsPerSecond: perSecond(float64(n), elapsed),
		MiBPerSecond:      perSecond(float64(n)*float64(size)/(1<<20), elapsed),
		Latency:           summarize(all),
		CPU:               usage,
		CPUPerRequest:     usage.perEvent(n),
		Failures:          fails.report(),
	}
}

// runNginx compares bundle downloads from p with nginx serving the same
// file, one after the other.
func runNginx(ctx context.Context, cfg *config, p *portal, logf func(string, ...any)) (*ThroughputReport, error) {
	bin, err := findNginx(ctx, logf)
	if err != nil {
		return nil, err
	}
	url, np, stop, err := startNginx(ctx, bin, p.blobPath(), p.digest, cfg.serverCPUs)
	if err != nil {
		return nil, err
	}
	defer stop()
	logf("nginx serving at %s", url)
	r := &ThroughputReport{BundleBytes: p.size, Concurrency: cfg.concurrency, DurationSeconds: cfg.duration.Seconds()}
	for _, s := range []struct {
		name, url string
		proc      *proc
	}{{"eportal", p.url, p.serve}, {"nginx", url, np}} {
		logf("downloading the bundle from %s, %d at a time, for %s", s.name, cfg.concurrency, cfg.duration)
		r.Servers = append(r.Servers, measureDownloads(ctx, s.name, s.proc, s.url, p.digest, p.size, cfg.concurrency, cfg.duration))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return r, nil
}
