package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/datadir"
	"github.com/kcare/kcare/internal/portal/fleet"
	"github.com/kcare/kcare/internal/portal/mirror"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/trust"
)

var now = func() time.Time { return time.Now().UTC() }

// shutdownBound bounds the wait for requests in flight at shutdown.
const shutdownBound = 20 * time.Second

func runServe(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	listen := fs.String("listen", "127.0.0.1:8080", "listen on `ADDR`")
	pubKeys := fs.String("publisher-keys", "", "publisher public key `PATH` (file or directory; default DATA/publishers)")
	ttl := fs.Duration("index-ttl", server.DefaultIndexTTL, "how long a signed index stays valid")
	jsonLog := fs.Bool("log-json", false, "log JSON lines instead of text")
	upstream := fs.String("upstream", "", "mirror the upstream portal at `URL`")
	upTokenFlags := registerUpstreamToken(fs)
	upProxy := fs.String("upstream-proxy", "", "reach the upstream through this proxy `URL`")
	syncEvery := fs.Duration("sync-interval", 10*time.Minute, "how often to sync from the upstream")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate `FILE` (PEM, with its chain)")
	tlsKey := fs.String("tls-key", "", "the certificate's private key `FILE` (PEM)")
	tlsSelf := fs.Bool("tls-self-signed", false, "serve HTTPS with a self-signed certificate, made on first start in DATA/tls/ and kept (its pin: eportal tls-pin)")
	inactive := fs.Duration("inactive-age", fleet.DefaultInactiveAge, "a server with no check-in for this long is inactive")
	externalURL := fs.String("external-url", "", "the portal's `URL` as agents reach it (https://HOST[:PORT]), for /installer; without it /installer refuses")
	metricsTokenFile := fs.String("metrics-token-file", "", "GET /metrics needs the bearer token in `FILE`")
	maxConns := fs.Int("max-conns", server.DefaultMaxConns, "hold at most `N` connections open (lowered to fit the open file limit)")
	maxPerSource := fs.Int("max-conns-per-source", server.DefaultMaxConnsPerSource, "hold at most `N` connections from one address (0: no bound; behind a proxy, raise it)")
	var metricsAllowed listFlag
	fs.Var(&metricsAllowed, "metrics-allow", "serve GET /metrics only to this `CIDR` (repeatable)")
	if _, err := parse(fs, e, args); err != nil {
		return err
	}
	allow, err := metricsAllow(metricsAllowed)
	if err != nil {
		return err
	}
	var scrapeToken string
	if *metricsTokenFile != "" {
		if scrapeToken, err = metricsToken(*metricsTokenFile); err != nil {
			return err
		}
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usageErr("--tls-cert and --tls-key go together")
	}
	if *tlsSelf && *tlsCert != "" {
		return usageErr("--tls-self-signed or --tls-cert, not both")
	}
	if *externalURL != "" {
		u, err := server.ParseExternalURL(*externalURL)
		if err != nil {
			return usageErr("--external-url: %v", err)
		}
		*externalURL = u
		if (*tlsSelf || *tlsCert != "") && strings.HasPrefix(u, "http://") {
			return usageErr("--external-url %s is http://, but eportal serves HTTPS", u)
		}
	}
	upToken, err := upstreamToken(upTokenFlags, "serve", e)
	if err != nil {
		return err
	}
	if *upstream != "" && upToken == "" {
		return usageErr("--upstream needs an upstream token (--upstream-token-file FILE or %s)", upstreamTokenSource.Env)
	}
	var h slog.Handler = slog.NewTextHandler(e.stderr, nil)
	if *jsonLog {
		h = slog.NewJSONHandler(e.stderr, nil)
	}
	log := slog.New(h)

	if err := datadir.MkdirAll(db.data); err != nil {
		return err
	}
	signer, err := portalKey(db.data)
	if err != nil {
		return err
	}
	tlsOn, err := serveTLS(db.data, *listen, *externalURL, *tlsCert, *tlsKey, *tlsSelf, log.Info)
	if err != nil {
		return err
	}
	salt, err := metricsSalt(db.data)
	if err != nil {
		return err
	}
	if *pubKeys == "" {
		*pubKeys = filepath.Join(db.data, "publishers")
	}
	publishers, err := trust.LoadKeyring(*pubKeys)
	if err != nil {
		return fmt.Errorf("publisher keys: %w (put the publishers' .pub files in %s)", err, *pubKeys)
	}
	st, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()

	srv := server.New(server.Config{
		Store:       st,
		Blobs:       blobs.Store{Dir: filepath.Join(db.data, "blobs")},
		IndexKey:    signer,
		Publishers:  publishers,
		IndexTTL:    *ttl,
		InactiveAge: *inactive,
		Log:         log,

		MetricsToken: scrapeToken,
		MetricsAllow: allow,
		MetricsSalt:  salt,
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	handler, err := server.WithInstaller(srv.Handler(), server.InstallerOptions{ExternalURL: *externalURL, CACert: tlsOn.caPEM, Pin: tlsOn.pin})
	if err != nil {
		return err
	}
	conns, lowered := server.MaxConnsWithin(*maxConns)
	if lowered {
		log.Warn("the open file limit lowers --max-conns; raise it (LimitNOFILE)", "max_conns", conns, "asked", *maxConns)
	}
	lim := server.NewConnLimit(conns, *maxPerSource)
	ln = lim.Listen(ln)
	hs := server.HTTPServer(handler, lim)
	hs.TLSConfig = tlsOn.config
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *upstream != "" {
		client, err := upstreamClient(*upProxy)
		if err != nil {
			return err
		}
		syncer := &mirror.Syncer{Upstream: *upstream, Token: upToken, Store: st, Blobs: blobs.Store{Dir: filepath.Join(db.data, "blobs")},
			Publishers: publishers, DataDir: db.data, Log: log, HTTP: client}
		go func() {
			for {
				res, err := syncer.Sync(ctx)
				if err != nil {
					log.Error("sync", "upstream", *upstream, "error", err)
				} else if res.Fetched > 0 || len(res.Refused) > 0 {
					log.Info("sync", "upstream", *upstream, "fetched", res.Fetched, "refused", len(res.Refused))
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(*syncEvery):
				}
			}
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
	log.Info("eportal serving", "addr", ln.Addr().String(), "tls", tlsOn.config != nil, "tls_pin", tlsOn.pin, "store", st.Kind(), "data", db.data,
		"index_key", signer.Fingerprint(), "publisher_keys", publishers.Len(), "external_url", *externalURL)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "bound", shutdownBound.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownBound)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// portalKey loads the portal's index signing key from DATA/portal.key,
// making one (and DATA/portal.pub) on first start.
func portalKey(data string) (*trust.Signer, error) {
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
