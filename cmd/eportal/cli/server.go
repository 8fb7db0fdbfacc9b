package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/portal/server"
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
	st, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	switch cmd {
	case "list":
		list, err := st.Servers(ctx, store.ServerFilter{Key: *key, Limit: *limit})
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
		before, err := st.Server(ctx, pos[0])
		if err != nil {
			return err
		}
		if err := st.DeleteServer(ctx, pos[0]); err != nil {
			return err
		}
		auditChange(ctx, st, "server.delete", pos[0], "", server.ServerAudit(before), nil)
	case "clean":
		if *inactive <= 0 {
			return usageErr("--inactive DAYS is required")
		}
		n, err := st.CleanServers(ctx, now().Add(-time.Duration(*inactive)*24*time.Hour))
		if err != nil {
			return err
		}
		audit(ctx, st, "server.clean", fmt.Sprintf("inactive %dd", *inactive), fmt.Sprintf("%d deleted", n))
		fmt.Fprintf(e.stdout, "%d servers deleted\n", n)
	}
	return nil
}
