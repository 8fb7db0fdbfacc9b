package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/textline"
)

func serverCmd(e *env) *cmdline.Command {
	return group("server", "servers: list, delete, clean", serverList(e), serverDelete(e), serverClean(e))
}

func serverList(e *env) *cmdline.Command {
	fs := flags("server list")
	db := withDB(fs)
	key := fs.String("key", "", "only servers of `KEY`")
	limit := fs.Int("limit", 0, "at most `N` servers (0: all)")
	return &cmdline.Command{Name: "list", Summary: "list the servers", Flags: fs,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			if *limit < 0 {
				return usageErr("--limit: 0 or more")
			}
			list, err := c.Servers(ctx, store.ServerFilter{Key: *key, Limit: *limit})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tHOSTNAME\tIP\tKEY\tKERNEL\tLEVEL\tEFFECTIVE\tCHECK-IN")
			for _, s := range list {
				ci := "never"
				if !s.LastCheckin.IsZero() {
					ci = s.LastCheckin.UTC().Format(time.RFC3339)
				}
				// What a server reported is escaped: it cannot add a row or a column.
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.ID, dash(textline.Escape(s.Hostname)), s.IP, dash(s.Key),
					dash(textline.Escape(s.Release)), s.Level, dash(textline.Escape(s.EffectiveRelease)), ci)
			}
			return tw.Flush()
		})}
}

func serverDelete(e *env) *cmdline.Command {
	fs := flags("server delete")
	db := withDB(fs)
	return &cmdline.Command{Name: "delete", Args: "ID", Summary: "delete a server", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			return c.DeleteServer(ctx, core.CLI, args[0])
		})}
}

func serverClean(e *env) *cmdline.Command {
	fs := flags("server clean")
	db := withDB(fs)
	inactive := fs.Int("inactive", 0, "delete servers with no check-in for `DAYS` (required)")
	return &cmdline.Command{Name: "clean", Summary: "delete the servers silent for a number of days", Flags: fs,
		Run: func(ctx context.Context, args []string) error {
			if *inactive <= 0 {
				return usageErr("--inactive DAYS is required")
			}
			return withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
				n, err := c.CleanServers(ctx, core.CLI, time.Duration(*inactive)*24*time.Hour)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "%d servers deleted\n", n)
				return err
			})(ctx, args)
		}}
}
