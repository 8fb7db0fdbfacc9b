package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/textline"
)

func runServer(ctx context.Context, e *env, args []string) error {
	cmd, args, err := sub(args, "list", "delete", "clean")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("server "+cmd, flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	key := fs.String("key", "", "list: only servers of `KEY`")
	inactive := fs.Int("inactive", 0, "clean: delete servers with no check-in for `DAYS`")
	limit := fs.Int("limit", 0, "list: at most `N` servers")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	c, st, err := db.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	switch cmd {
	case "list":
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
	case "delete":
		if len(pos) != 1 {
			return usageErr("give the server id")
		}
		return c.DeleteServer(ctx, core.CLI, pos[0])
	case "clean":
		if *inactive <= 0 {
			return usageErr("--inactive DAYS is required")
		}
		n, err := c.CleanServers(ctx, core.CLI, time.Duration(*inactive)*24*time.Hour)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%d servers deleted\n", n)
	}
	return nil
}
