package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/daemon"
	"github.com/kcare/kcare/internal/portal/datadir"
	"github.com/kcare/kcare/internal/portal/mirror"
	"github.com/kcare/kcare/internal/secretflag"
	"github.com/kcare/kcare/internal/trust"
)

// publisherKeys loads the keys of the publishers directory (or path),
// trusted beside those eportal publisher add keeps in the database.
func publisherKeys(data, path string) (*trust.Keyring, error) {
	k, _, err := daemon.PublisherDir(data, path)
	return k, err
}

// requirePublishers refuses to fetch or import levels while the portal
// trusts no publisher key: every one would be refused.
func requirePublishers(ctx context.Context, c *core.Core) error {
	keys, err := c.PublisherKeys(ctx)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return fmt.Errorf("publisher keys: %w; add one: eportal publisher add FILE.pub", core.ErrNoPublisherKeys)
	}
	return nil
}

// errUnhealthy makes sync --status exit 1 without another message.
var errUnhealthy = errors.New("sync unhealthy")

// syncCmd fetches new levels from an upstream portal once, or with
// --status reports the last syncs as JSON (exit 1 when unhealthy).
func syncCmd(e *env) *cmdline.Command {
	fs := flags("sync")
	db := withDB(fs)
	upstream := fs.String("upstream", "", "the upstream portal's `URL`")
	tokenFlags := registerUpstreamToken(fs)
	pubKeys := fs.String("publisher-keys", "", "publisher public key `PATH` (default DATA/publishers)")
	proxy := fs.String("upstream-proxy", "", "reach the upstream through this proxy `URL` (default: the environment's https_proxy/http_proxy)")
	status := fs.Bool("status", false, "print the last sync's status as JSON; exit 1 when unhealthy")
	maxAge := fs.Duration("max-age", 24*time.Hour, "with --status: unhealthy when the last good sync is older")
	return &cmdline.Command{Name: "sync", Summary: "fetch new levels from an upstream portal (or --status)", Flags: fs,
		Run: func(ctx context.Context, args []string) error {
			if *status {
				return syncStatus(e, db.data, *maxAge)
			}
			token, err := upstreamToken(tokenFlags, "sync", e)
			if err != nil {
				return err
			}
			if *upstream == "" || token == "" {
				return usageErr("--upstream and an upstream token (--upstream-token-file FILE or %s) are required", upstreamTokenSource.Env)
			}
			client, err := daemon.UpstreamClient(*proxy)
			if err != nil {
				return usageErr("%v", err)
			}
			keys, err := publisherKeys(db.data, *pubKeys)
			if err != nil {
				return err
			}
			c, st, err := db.openWith(ctx, e, keys)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := requirePublishers(ctx, c); err != nil {
				return err
			}
			res, err := c.Sync(ctx, core.CLI, mirror.Syncer{Upstream: *upstream, Token: token, DataDir: db.data, HTTP: client})
			if res != nil {
				fmt.Fprintf(e.stdout, "fetched %d levels, refused %d\n", res.Fetched, len(res.Refused))
				for _, r := range res.Refused {
					fmt.Fprintf(e.stderr, "eportal sync: refused: %s\n", r)
				}
			}
			if err != nil {
				return err
			}
			if len(res.Refused) > 0 {
				return errors.New("some levels were refused")
			}
			return nil
		}}
}

// syncStatus prints the data dir's last syncs as JSON; errUnhealthy when
// the last good one is older than maxAge or the last failed.
func syncStatus(e *env, data string, maxAge time.Duration) error {
	st, err := mirror.ReadStatus(data)
	if err != nil {
		return err
	}
	healthy := st.Healthy(now(), maxAge)
	out := map[string]any{"healthy": healthy, "status": st}
	if !st.LastSuccess.IsZero() {
		out["lag_seconds"] = int(now().Sub(st.LastSuccess).Seconds())
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Fprintln(e.stdout, string(b))
	if !healthy {
		return errUnhealthy
	}
	return nil
}

// upstreamTokenSource is where eportal serve and sync take the
// upstream's API token from.
var upstreamTokenSource = secretflag.Source{Flag: "upstream-token", FileFlag: "upstream-token-file", Env: "KCARE_UPSTREAM_TOKEN"}

func registerUpstreamToken(fs *flag.FlagSet) *secretflag.Value {
	return secretflag.Register(fs, upstreamTokenSource, "an API token on the upstream")
}

// upstreamToken returns the upstream token given to eportal cmd, "" if
// none. Given more than one way is a usage error.
func upstreamToken(v *secretflag.Value, cmd string, e *env) (string, error) {
	tok, err := v.Get("eportal "+cmd, e.stderr)
	if errors.Is(err, secretflag.ErrConflict) {
		return "", usageErr("%v", err)
	}
	return tok, err
}

func exportCmd(e *env) *cmdline.Command {
	fs := flags("export")
	db := withDB(fs)
	out := fs.String("out", "", "write the archive to `FILE` (required)")
	since := fs.String("since", "", "only levels published after `TIME` (RFC 3339)")
	var kernels listFlag
	fs.Var(&kernels, "kernel", "only this kernel `BUILD-ID` (repeatable)")
	return &cmdline.Command{Name: "export", Summary: "write levels and bundles to an archive for an air-gapped portal", Flags: fs,
		Run: func(ctx context.Context, args []string) error {
			if *out == "" {
				return usageErr("--out FILE is required")
			}
			o := mirror.ExportOptions{Kernels: kernels}
			if *since != "" {
				t, err := time.Parse(time.RFC3339, *since)
				if err != nil {
					return usageErr("--since: %v", err)
				}
				o.Since = t
			}
			return withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
				f, err := atomicfile.Create(*out, datadir.FileMode)
				if err != nil {
					return err
				}
				defer f.Close()
				n, err := c.Export(ctx, o, f)
				if err != nil {
					return err
				}
				if err := f.Commit(); err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "exported %d levels to %s\n", n, *out)
				return err
			})(ctx, args)
		}}
}

func importCmd(e *env) *cmdline.Command {
	fs := flags("import")
	db := withDB(fs)
	pubKeys := fs.String("publisher-keys", "", "publisher public key `PATH` (default DATA/publishers)")
	return &cmdline.Command{Name: "import", Args: "ARCHIVE", Summary: "verify and import an export archive", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: func(ctx context.Context, args []string) error {
			keys, err := publisherKeys(db.data, *pubKeys)
			if err != nil {
				return err
			}
			c, st, err := db.openWith(ctx, e, keys)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := requirePublishers(ctx, c); err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			res, err := c.Import(ctx, core.CLI, filepath.Base(args[0]), f)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "imported %d levels (%d new, %d already here)\n", res.Levels, res.Stored, res.Already)
			return err
		}}
}
