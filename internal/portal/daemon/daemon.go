// Package daemon runs eportal serve: it opens the data directory and the
// store, loads or makes the portal's keys, builds the core
// (internal/portal/core) and the HTTP face (internal/portal/server) over
// it, listens (HTTP or HTTPS, with connection bounds), mirrors an
// upstream when asked, and shuts down in order when its context ends:
// the listener and requests in flight, then the sync loop, then the
// store. The command line parses flags into Options and calls Run.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/datadir"
	"github.com/kcare/kcare/internal/portal/fleet"
	"github.com/kcare/kcare/internal/portal/mirror"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portalclient"
	"github.com/kcare/kcare/internal/trust"
)

// Defaults of Options.
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultIndexTTL          = core.DefaultIndexTTL
	DefaultInactiveAge       = fleet.DefaultInactiveAge
	DefaultSyncInterval      = 10 * time.Minute
	DefaultRolloutInterval   = time.Minute
	DefaultMaxConns          = server.DefaultMaxConns
	DefaultMaxConnsPerSource = server.DefaultMaxConnsPerSource
)

// ShutdownBound bounds the wait for requests in flight at shutdown.
const ShutdownBound = 20 * time.Second

// Options are eportal serve's settings.
type Options struct {
	DataDir string // the data directory
	DSN     string // PostgreSQL instead of SQLite in DataDir
	Listen  string // host:port
	// PublisherKeys is a file or directory of publisher public keys;
	// "" is DataDir/publishers.
	PublisherKeys string
	IndexTTL      time.Duration
	InactiveAge   time.Duration

	Upstream      string // mirror this portal
	UpstreamToken string // an API token on it
	UpstreamProxy string // reach it through this proxy URL
	SyncEvery     time.Duration

	TLSCert, TLSKey string // serve HTTPS with this certificate and key
	TLSSelfSigned   bool   // serve HTTPS with the data dir's self-signed certificate
	ExternalURL     string // the portal's URL as agents reach it, for /installer

	MetricsToken string         // GET /metrics needs this bearer token
	MetricsAllow []netip.Prefix // GET /metrics only from these networks

	MaxConns, MaxConnsPerSource int

	// RolloutEvery is how often the rollout loop decides on the
	// rollouts (core.Core.RolloutTick).
	RolloutEvery time.Duration

	Log *slog.Logger
	Now func() time.Time // nil: time.Now
}

// ErrBadOptions is a combination of options Run refuses before it starts.
var ErrBadOptions = errors.New("bad options")

func badOption(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadOptions, fmt.Sprintf(format, args...))
}

// check refuses options that do not go together, and canonicalises the
// external URL.
func (o *Options) check() error {
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return badOption("--tls-cert and --tls-key go together")
	}
	if o.TLSSelfSigned && o.TLSCert != "" {
		return badOption("--tls-self-signed or --tls-cert, not both")
	}
	if o.ExternalURL != "" {
		u, err := server.ParseExternalURL(o.ExternalURL)
		if err != nil {
			return badOption("--external-url: %v", err)
		}
		o.ExternalURL = u
		if (o.TLSSelfSigned || o.TLSCert != "") && strings.HasPrefix(u, "http://") {
			return badOption("--external-url %s is http://, but eportal serves HTTPS", u)
		}
	}
	if o.Upstream != "" && o.UpstreamToken == "" {
		return badOption("--upstream needs an upstream token")
	}
	return nil
}

func (o *Options) defaults() {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.IndexTTL <= 0 {
		o.IndexTTL = DefaultIndexTTL
	}
	if o.InactiveAge <= 0 {
		o.InactiveAge = DefaultInactiveAge
	}
	if o.SyncEvery <= 0 {
		o.SyncEvery = DefaultSyncInterval
	}
	if o.RolloutEvery <= 0 {
		o.RolloutEvery = DefaultRolloutInterval
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Run serves the portal until ctx ends, then shuts down in order: it
// stops listening and waits up to ShutdownBound for requests in flight,
// waits for the sync loop to finish, and closes the store last.
func Run(ctx context.Context, o Options) error {
	o.defaults()
	if err := o.check(); err != nil {
		return err
	}
	log := o.Log
	if err := datadir.MkdirAll(o.DataDir); err != nil {
		return err
	}
	tlsOn, err := serveTLS(o, log.Info)
	if err != nil {
		return err
	}
	publishers, from, err := PublisherDir(o.DataDir, o.PublisherKeys)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, o.DataDir, o.DSN)
	if err != nil {
		return err
	}
	defer st.Close()
	if n, ok := st.(interface{ Notes() []string }); ok {
		for _, note := range n.Notes() {
			log.Warn(note)
		}
	}
	signer, salt, err := portalSecrets(ctx, o, st, log)
	if err != nil {
		return err
	}

	c := core.New(core.Config{
		Store: st, DataDir: o.DataDir, IndexKey: signer, Publishers: publishers, PublishersFrom: from,
		IndexTTL: o.IndexTTL, InactiveAge: o.InactiveAge, Log: log, Now: o.Now,
	})
	pubKeys, err := c.PublisherKeys(ctx)
	if err != nil {
		return err
	}
	if len(pubKeys) == 0 {
		log.Warn("no publisher key is trusted yet, so publishing is refused: add the publisher's public key with eportal publisher add",
			"command", "eportal publisher add --data "+o.DataDir+" FILE.pub")
	}
	srv := server.New(server.Config{Core: c, Log: log, MetricsToken: o.MetricsToken, MetricsAllow: o.MetricsAllow, MetricsSalt: salt})
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	handler, err := server.WithInstaller(srv.Handler(), server.InstallerOptions{ExternalURL: o.ExternalURL, CACert: tlsOn.caPEM, Pin: tlsOn.pin})
	if err != nil {
		ln.Close()
		return err
	}
	conns, lowered := server.MaxConnsWithin(o.MaxConns)
	if lowered {
		log.Warn("the open file limit lowers --max-conns; raise it (LimitNOFILE)", "max_conns", conns, "asked", o.MaxConns)
	}
	lim := server.NewConnLimit(conns, o.MaxConnsPerSource)
	ln = lim.Listen(ln)
	hs := server.HTTPServer(handler, lim)
	hs.TLSConfig = tlsOn.config

	var syncs sync.WaitGroup
	syncCtx, stopSync := context.WithCancel(ctx)
	defer func() {
		stopSync()
		syncs.Wait() // before the deferred st.Close
	}()
	syncs.Add(1)
	go func() {
		defer syncs.Done()
		rolloutLoop(syncCtx, c, o.RolloutEvery, log)
	}()
	if o.Upstream != "" {
		client, err := upstreamClient(o.UpstreamProxy)
		if err != nil {
			return err
		}
		syncer := mirror.Syncer{Upstream: o.Upstream, Token: o.UpstreamToken, DataDir: o.DataDir, HTTP: client}
		syncs.Add(1)
		go func() {
			defer syncs.Done()
			syncLoop(syncCtx, c, syncer, o.SyncEvery, log)
		}()
	}
	errc := make(chan error, 1)
	go func() {
		if tlsOn.config != nil {
			errc <- hs.ServeTLS(ln, "", "")
			return
		}
		errc <- hs.Serve(ln)
	}()
	log.Info("eportal serving", "addr", ln.Addr().String(), "tls", tlsOn.config != nil, "tls_pin", tlsOn.pin, "store", st.Kind(), "data", o.DataDir,
		"index_key", signer.Fingerprint(), "publisher_keys", len(pubKeys), "external_url", o.ExternalURL)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "bound", ShutdownBound.String())
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownBound)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// portalSecrets returns the index signing key and the metrics salt: the
// data directory's for a portal on SQLite; for one on PostgreSQL, the
// database's, which every replica shares (SharedPortalKey), and then it
// stores there the bundles only this data directory holds.
func portalSecrets(ctx context.Context, o Options, st store.Store, log *slog.Logger) (*trust.Signer, []byte, error) {
	if o.DSN == "" {
		signer, err := PortalKey(o.DataDir)
		if err != nil {
			return nil, nil, err
		}
		salt, err := MetricsSalt(o.DataDir)
		return signer, salt, err
	}
	signer, err := SharedPortalKey(ctx, st, o.DataDir)
	if err != nil {
		return nil, nil, err
	}
	salt, err := SharedMetricsSalt(ctx, st, o.DataDir)
	if err != nil {
		return nil, nil, err
	}
	n, err := shareLocalBlobs(ctx, st, filepath.Join(o.DataDir, "blobs"))
	if err != nil {
		return nil, nil, fmt.Errorf("store the data directory's bundles in the database: %w", err)
	}
	if n > 0 {
		log.Info("stored the data directory's bundles in the database", "bundles", n)
	}
	return signer, salt, nil
}

// syncLoop syncs from the upstream every interval until ctx ends.
func syncLoop(ctx context.Context, c *core.Core, s mirror.Syncer, every time.Duration, log *slog.Logger) {
	for {
		res, err := c.Sync(ctx, core.Actor{Name: "mirror", IP: "sync"}, s)
		switch {
		case errors.Is(err, core.ErrSyncing):
			log.Info("sync: another replica syncs now; this one waits for its next turn", "upstream", s.Upstream)
		case err != nil && ctx.Err() == nil:
			log.Error("sync", "upstream", s.Upstream, "error", err)
		case err == nil && (res.Fetched > 0 || len(res.Refused) > 0):
			log.Info("sync", "upstream", s.Upstream, "fetched", res.Fetched, "refused", len(res.Refused))
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// rolloutLoop runs the rollout loop every interval until ctx ends.
func rolloutLoop(ctx context.Context, c *core.Core, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := c.RolloutTick(ctx); err != nil && ctx.Err() == nil {
			log.Error("rollout loop", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// upstreamClient is the mirror's HTTP client: through proxy when given,
// else as the environment's proxy variables say.
func upstreamClient(proxy string) (*http.Client, error) {
	tr, err := portalclient.NewTransport(portalclient.TransportOptions{HTTPProxy: proxy, HTTPSProxy: proxy})
	if err != nil {
		return nil, badOption("--upstream-proxy: %v", err)
	}
	return &http.Client{Timeout: 30 * time.Minute, Transport: tr}, nil
}

// UpstreamClient is upstreamClient for eportal sync.
func UpstreamClient(proxy string) (*http.Client, error) { return upstreamClient(proxy) }

// PublisherDir loads the publisher keys of a file or directory (path, or
// "" for DATA/publishers), trusted beside those in the database, and says
// where they came from. The default directory may be missing or empty (a
// new portal trusts the keys eportal publisher add stores); a path given
// must hold keys.
func PublisherDir(data, path string) (*trust.Keyring, string, error) {
	explicit := path != ""
	if !explicit {
		path = filepath.Join(data, "publishers")
	}
	k, err := trust.LoadKeyring(path)
	if err != nil && !explicit && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, trust.ErrNoKeys)) {
		return nil, path, nil
	}
	if err != nil {
		return nil, path, fmt.Errorf("publisher keys: %w", err)
	}
	return k, path, nil
}

// PortalKey loads the portal's index signing key from DATA/portal.key,
// making one (and DATA/portal.pub) on first start.
func PortalKey(data string) (*trust.Signer, error) {
	keyPath := filepath.Join(data, "portal.key")
	b, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		priv, pub, err := trust.GenerateKey("kcare eportal index key", "")
		if err != nil {
			return nil, err
		}
		if err := datadir.WriteFile(keyPath, priv); err != nil {
			return nil, err
		}
		if err := datadir.WriteFile(filepath.Join(data, "portal.pub"), pub); err != nil {
			return nil, err
		}
		b = priv
	} else if err != nil {
		return nil, err
	}
	return trust.ReadSigner(b)
}

// metricsSaltFile holds the salt of the hash that names activation keys in
// /metrics (DATA/metrics.salt, made at first start). Replicas sharing one
// database share it, as they share portal.key.
const metricsSaltFile = "metrics.salt"

// MetricsSalt reads DATA/metrics.salt, making it on first start.
func MetricsSalt(data string) ([]byte, error) {
	path := filepath.Join(data, metricsSaltFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		salt := make([]byte, 32)
		rand.Read(salt)
		b = []byte(hex.EncodeToString(salt) + "\n")
		if err := datadir.WriteFile(path, b); err != nil {
			return nil, fmt.Errorf("metrics salt: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("metrics salt: %w", err)
	}
	salt, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(salt) < 16 {
		return nil, fmt.Errorf("metrics salt %s: want at least 32 hex digits", path)
	}
	return salt, nil
}
