package cli

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/daemon"
	"github.com/kcare/kcare/internal/secretflag"
)

func serveCmd(e *env) *cmdline.Command {
	fs := flags("serve")
	db := withDB(fs)
	var o daemon.Options
	fs.StringVar(&o.Listen, "listen", daemon.DefaultListen, "listen on `ADDR`")
	fs.StringVar(&o.PublisherKeys, "publisher-keys", "", "publisher public key `PATH` (file or directory; default DATA/publishers)")
	fs.DurationVar(&o.IndexTTL, "index-ttl", daemon.DefaultIndexTTL, "how long a signed index stays valid")
	jsonLog := fs.Bool("log-json", false, "log JSON lines instead of text")
	fs.StringVar(&o.Upstream, "upstream", "", "mirror the upstream portal at `URL`")
	upTokenFlags := registerUpstreamToken(fs)
	fs.StringVar(&o.UpstreamProxy, "upstream-proxy", "", "reach the upstream through this proxy `URL`")
	fs.DurationVar(&o.SyncEvery, "sync-interval", daemon.DefaultSyncInterval, "how often to sync from the upstream")
	fs.DurationVar(&o.RolloutEvery, "rollout-interval", daemon.DefaultRolloutInterval, "how often the rollout loop decides on the rollouts: the next wave, a halt")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "serve HTTPS with this certificate `FILE` (PEM, with its chain)")
	fs.StringVar(&o.TLSKey, "tls-key", "", "the certificate's private key `FILE` (PEM)")
	fs.BoolVar(&o.TLSSelfSigned, "tls-self-signed", false, "serve HTTPS with a self-signed certificate, made on first start in DATA/tls/ and kept (its pin: eportal tls-pin)")
	fs.DurationVar(&o.InactiveAge, "inactive-age", daemon.DefaultInactiveAge, "a server with no check-in for this long is inactive")
	fs.StringVar(&o.ExternalURL, "external-url", "", "the portal's `URL` as agents reach it (https://HOST[:PORT]), for /installer; without it /installer refuses")
	metricsTokenFile := fs.String("metrics-token-file", "", "GET /metrics needs the bearer token in `FILE`")
	fs.IntVar(&o.MaxConns, "max-conns", daemon.DefaultMaxConns, "hold at most `N` connections open (lowered to fit the open file limit)")
	fs.IntVar(&o.MaxConnsPerSource, "max-conns-per-source", daemon.DefaultMaxConnsPerSource, "hold at most `N` connections from one address (0: no bound; behind a proxy, raise it)")
	var metricsAllowed listFlag
	fs.Var(&metricsAllowed, "metrics-allow", "serve GET /metrics only to this `CIDR` (repeatable)")
	return &cmdline.Command{Name: "serve", Summary: "run the portal", Flags: fs,
		Run: func(ctx context.Context, args []string) error {
			return serve(ctx, e, db, o, metricsAllowed, *metricsTokenFile, *jsonLog, upTokenFlags)
		}}
}

// serve runs eportal serve with its flags parsed, until SIGINT or SIGTERM.
func serve(ctx context.Context, e *env, db *dbFlags, o daemon.Options, metricsAllowed []string, metricsTokenFile string, jsonLog bool, upTokenFlags *secretflag.Value) error {
	var err error
	if o.MetricsAllow, err = metricsAllow(metricsAllowed); err != nil {
		return err
	}
	if metricsTokenFile != "" {
		if o.MetricsToken, err = metricsToken(metricsTokenFile); err != nil {
			return err
		}
	}
	if o.UpstreamToken, err = upstreamToken(upTokenFlags, "serve", e); err != nil {
		return err
	}
	if o.Upstream != "" && o.UpstreamToken == "" {
		return usageErr("--upstream needs an upstream token (--upstream-token-file FILE or %s)", upstreamTokenSource.Env)
	}
	var h slog.Handler = slog.NewTextHandler(e.stderr, nil)
	if jsonLog {
		h = slog.NewJSONHandler(e.stderr, nil)
	}
	o.Log, o.DataDir, o.DSN = slog.New(h), db.data, db.dsn
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = daemon.Run(ctx, o)
	if errors.Is(err, daemon.ErrBadOptions) {
		return usageErr("%s", strings.TrimPrefix(err.Error(), daemon.ErrBadOptions.Error()+": "))
	}
	return err
}
