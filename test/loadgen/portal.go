package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// Bounds on the waits of setting up and tearing down.
const (
	serveStartBound = 30 * time.Second // for eportal serve to answer /healthz
	serveStopBound  = 25 * time.Second // eportal's own shutdown bound is 20s
	schemaBound     = 30 * time.Second // for creating or dropping the schema
)

// The activation keys of a run: the seeded servers', and the simulated
// agents' own (unless -shared-key).
const (
	seedKey  = "loadgen-seeded"
	agentKey = "loadgen-agents"
)

// adminPassword is the throwaway admin's password; the portal lives only
// as long as the run, on 127.0.0.1.
const adminPassword = "loadgen admin password"

// portal is an eportal set up for one run, and what to undo at the end.
type portal struct {
	dir       string   // temporary directory holding everything below
	data      string   // eportal's --data
	dsn       string   // eportal's --db; "" for SQLite
	bin       string   // the eportal binary
	cpus      string   // taskset -c list eportal serve runs on; "" any
	serveArgs []string // more arguments of eportal serve
	url       string   // http://127.0.0.1:PORT
	token     string   // an admin's API token
	publisher *trust.Signer
	keys      *trust.Keyring // the portal's index key, from DATA/portal.pub
	serve     *proc          // replica 0's eportal serve
	// replicas are the eportal serve processes on the store, replica 0
	// on data; with more than one, on PostgreSQL, agents reach them
	// through haproxy (balancer) at url.
	replicas []*replica
	balancer *proc
	killNext int // the replica the next kill takes

	seedTime time.Duration
	digest   string // the published bundle's sha256
	size     int64  // and its size

	undo []func() // run in reverse by close
}

// close stops the server and removes everything the run made.
func (p *portal) close() {
	for i := len(p.undo) - 1; i >= 0; i-- {
		p.undo[i]()
	}
	p.undo = nil
}

// setupPortal makes a fresh portal as the package doc describes. On
// error it undoes what it did.
func setupPortal(ctx context.Context, cfg *config, logf func(string, ...any)) (_ *portal, err error) {
	p := &portal{cpus: cfg.serverCPUs, serveArgs: cfg.serveArgs}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.dir, err = os.MkdirTemp("", "kcare-loadgen-"); err != nil {
		return nil, err
	}
	p.undo = append(p.undo, func() { os.RemoveAll(p.dir) })
	p.data = filepath.Join(p.dir, "data")

	if p.bin = cfg.eportal; p.bin == "" {
		p.bin = filepath.Join(p.dir, "eportal")
		logf("building eportal")
		if _, err := runCmd(ctx, "", "go", "build", "-o", p.bin, "github.com/kcare/kcare/cmd/eportal"); err != nil {
			return nil, fmt.Errorf("build eportal: %w", err)
		}
	}

	if cfg.db == "postgres" {
		schema, err := createSchema(ctx, cfg.dsn)
		if err != nil {
			return nil, err
		}
		logf("created PostgreSQL schema %s", schema)
		p.undo = append(p.undo, func() {
			if err := dropSchema(cfg.dsn, schema); err != nil {
				logf("%v", err)
			} else {
				logf("dropped PostgreSQL schema %s", schema)
			}
		})
		p.dsn = withSearchPath(cfg.dsn, schema)
	}

	if _, err := p.eportal(ctx, adminPassword+"\n", "user", "add", "loadgen", "--role", "admin"); err != nil {
		return nil, err
	}
	if p.token, err = p.eportal(ctx, "", "token", "add", "--user", "loadgen", "--note", "loadgen"); err != nil {
		return nil, err
	}
	if err := p.addPublisherKey(ctx); err != nil {
		return nil, err
	}
	if err := p.seed(ctx, cfg.seed, logf); err != nil {
		return nil, err
	}
	if err := p.start(ctx, cfg.replicas); err != nil {
		return nil, err
	}
	if cfg.replicas > 1 {
		logf("%d eportal replicas serving behind haproxy at %s (%s)", cfg.replicas, p.url, cfg.db)
	} else {
		logf("eportal serving at %s (%s)", p.url, cfg.db)
	}
	pub, err := os.ReadFile(filepath.Join(p.data, "portal.pub"))
	if err != nil {
		return nil, fmt.Errorf("the portal's index key: %w", err)
	}
	if p.keys, err = trust.ReadKeyring(pub); err != nil {
		return nil, fmt.Errorf("the portal's index key: %w", err)
	}
	data, sig, err := makeBundle(p.publisher, cfg.bundleSize)
	if err != nil {
		return nil, err
	}
	if err := p.publish(ctx, data, sig); err != nil {
		return nil, err
	}
	logf("published level 1 for %s: %d bytes, sha256 %s", fakekernel.Release, p.size, p.digest)
	return p, nil
}

// addPublisherKey makes a publisher key and adds its public half to the
// store with eportal publisher add, so that every replica trusts it.
func (p *portal) addPublisherKey(ctx context.Context) error {
	priv, pub, err := trust.GenerateKey("kcare loadgen publisher", "")
	if err != nil {
		return err
	}
	if p.publisher, err = trust.ReadSigner(priv); err != nil {
		return err
	}
	path := filepath.Join(p.dir, "loadgen.pub")
	if err := os.WriteFile(path, pub, 0o644); err != nil {
		return err
	}
	_, err = p.eportal(ctx, "", "publisher", "add", path)
	return err
}

// eportal runs an eportal admin command on the portal's store and returns
// its standard output.
func (p *portal) eportal(ctx context.Context, stdin string, args ...string) (string, error) {
	args = append(args, "--data", p.data)
	if p.dsn != "" {
		args = append(args, "--db", p.dsn)
	}
	return runCmd(ctx, stdin, p.bin, args...)
}

// seed adds the two activation keys and n seeded servers, on the store
// opened directly, before eportal serve starts.
func (p *portal) seed(ctx context.Context, n int, logf func(string, ...any)) error {
	st, err := store.Open(ctx, p.data, p.dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, k := range []string{seedKey, agentKey} {
		if err := st.AddKey(ctx, &store.Key{Key: k, Feed: "main", Note: "loadgen"}); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	logf("seeding %d servers", n)
	start := time.Now()
	if err := store.SeedServers(ctx, st, seedKey, n); err != nil {
		return err
	}
	p.seedTime = time.Since(start)
	logf("seeded %d servers in %s", n, p.seedTime.Round(time.Millisecond))
	return nil
}

// replica is one eportal serve process on the portal's store.
type replica struct {
	data  string // its --data
	addr  string // 127.0.0.1:PORT
	serve *proc
}

// serves are the replicas' eportal serve processes.
func (p *portal) serves() []*proc {
	var out []*proc
	for _, r := range p.replicas {
		out = append(out, r.serve)
	}
	return out
}

// start runs n replicas of eportal serve, each on a free port of
// 127.0.0.1 and with a data directory of its own (replica 0's is p.data),
// and with more than one, haproxy in front of them.
func (p *portal) start(ctx context.Context, n int) error {
	for i := range n {
		port, err := freePort()
		if err != nil {
			return err
		}
		r := &replica{data: p.data, addr: fmt.Sprintf("127.0.0.1:%d", port)}
		if i > 0 {
			r.data = filepath.Join(p.dir, fmt.Sprintf("data-%d", i))
		}
		p.replicas = append(p.replicas, r)
		p.undo = append(p.undo, func() { r.serve.stop(syscall.SIGTERM, serveStopBound) })
		if err := p.startReplica(ctx, i); err != nil {
			return err
		}
	}
	p.url = "http://" + p.replicas[0].addr
	if n > 1 {
		url, bp, stop, err := startHAProxy(ctx, p.dir, p.replicas)
		if err != nil {
			return err
		}
		p.url, p.balancer = url, bp
		p.undo = append(p.undo, stop)
	}
	return nil
}

// startReplica runs eportal serve for replica i, appending to its log.
func (p *portal) startReplica(ctx context.Context, i int) error {
	r := p.replicas[i]
	args := []string{"serve", "--data", r.data, "--listen", r.addr}
	if p.dsn != "" {
		args = append(args, "--db", p.dsn)
	}
	args = append(args, p.serveArgs...)
	var err error
	r.serve, err = startProc(fmt.Sprintf("eportal serve (replica %d)", i), onCPUs(exec.Command(p.bin, args...), p.cpus),
		filepath.Join(p.dir, fmt.Sprintf("eportal-%d.log", i)))
	if err != nil {
		return err
	}
	if i == 0 {
		p.serve = r.serve
	}
	return r.serve.waitHTTP(ctx, "http://"+r.addr+"/healthz", serveStartBound)
}

// makeBundle makes a signed bundle of level 1 for the fake kernel, its
// module padded with random bytes so that the .kcp is about size bytes.
func makeBundle(s *trust.Signer, size int) (data, sig []byte, err error) {
	return makeLevelBundle(s, size, 1)
}

// makeLevelBundle is makeBundle for level, released an hour ago.
func makeLevelBundle(s *trust.Signer, size, level int) (data, sig []byte, err error) {
	name := fmt.Sprintf("kcare_loadgen_l%d", level)
	released := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	m := bundle.Manifest{
		Name:  fmt.Sprintf("%s-%d", fakekernel.Release, level),
		Level: level,
		Kernel: bundle.Kernel{BuildID: fakekernel.BuildID, Release: fakekernel.Release,
			Version: fakekernel.Version, KernelID: kernel.KernelID(fakekernel.Version)},
		Module:           bundle.Module{File: name + ".ko", Name: name, Vermagic: fakekernel.Release + " SMP preempt mod_unload modversions "},
		CVEs:             []bundle.CVE{{ID: "CVE-2026-1001", Description: "load test fix", URL: "https://www.cve.org/"}},
		EffectiveRelease: fmt.Sprintf("6.1.0-56.kcare%d-amd64", level),
		Released:         released,
	}
	module := fakekernel.Module(name, m.Module.Vermagic, true)
	write := func(module []byte) ([]byte, error) {
		var buf bytes.Buffer
		if err := bundle.Write(&buf, m, module); err != nil {
			return nil, fmt.Errorf("make bundle: %w", err)
		}
		return buf.Bytes(), nil
	}
	// The archive around the module costs the same whatever its size,
	// give or take a tar block: measure it, then pad.
	bare, err := write(module)
	if err != nil {
		return nil, nil, err
	}
	if pad := size - len(bare); pad > 0 {
		padding := make([]byte, pad)
		rand.Read(padding)
		if data, err = write(append(module, padding...)); err != nil {
			return nil, nil, err
		}
	} else {
		data = bare
	}
	if sig, err = s.Sign(bytes.NewReader(data)); err != nil {
		return nil, nil, fmt.Errorf("sign bundle: %w", err)
	}
	return data, sig, nil
}

// publish uploads a bundle through POST /api/v1/publish.
func (p *portal) publish(ctx context.Context, data, sig []byte) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range []struct {
		field, name string
		data        []byte
	}{{"bundle", "loadgen.kcp", data}, {"signature", "loadgen.kcp.sig", sig}} {
		w, err := mw.CreateFormFile(f.field, f.name)
		if err != nil {
			return err
		}
		w.Write(f.data)
	}
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/api/v1/publish", &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Api-Key", p.token)
	client := &http.Client{Timeout: requestBound, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish: portal answered %s: %s", resp.Status, strings.TrimSpace(string(out)))
	}
	var res struct {
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("publish: bad answer: %w", err)
	}
	if want := bundle.Digest(data); res.Digest != want || res.Size != int64(len(data)) {
		return fmt.Errorf("publish: portal stored sha256 %s, %d bytes; sent %s, %d bytes", res.Digest, res.Size, want, len(data))
	}
	p.digest, p.size = res.Digest, res.Size
	return nil
}

// blobPath is where the published bundle lives in the data directory.
func (p *portal) blobPath() string {
	return blobs.Store{Dir: filepath.Join(p.data, "blobs")}.Path(p.digest)
}

// checkLocalDSN refuses a PostgreSQL DSN that is not on this machine:
// loadgen creates and drops a schema there.
func checkLocalDSN(dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("PostgreSQL DSN: %w", err)
	}
	switch h := cfg.Host; {
	case h == "127.0.0.1", h == "::1", h == "localhost", strings.HasPrefix(h, "/"):
		return nil
	default:
		return fmt.Errorf("PostgreSQL DSN names host %s: loadgen creates and drops a schema, so only a database on 127.0.0.1 will do", h)
	}
}

// createSchema creates a randomly named schema in dsn's database.
func createSchema(ctx context.Context, dsn string) (string, error) {
	b := make([]byte, 6)
	rand.Read(b)
	schema := "kcare_loadgen_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(ctx, schemaBound)
	defer cancel()
	if err := execSQL(ctx, dsn, "CREATE SCHEMA "+schema); err != nil {
		return "", fmt.Errorf("create schema %s: %w", schema, err)
	}
	return schema, nil
}

// dropSchema drops schema and everything in it. It runs at the end, also
// after an interrupt, so it does not take the run's context.
func dropSchema(dsn, schema string) error {
	ctx, cancel := context.WithTimeout(context.Background(), schemaBound)
	defer cancel()
	if err := execSQL(ctx, dsn, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w", schema, err)
	}
	return nil
}

func execSQL(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// withSearchPath returns dsn, a URL or key=value string, selecting schema.
func withSearchPath(dsn, schema string) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn + " search_path=" + schema
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}
