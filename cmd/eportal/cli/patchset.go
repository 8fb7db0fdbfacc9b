package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
)

func runPatchset(ctx context.Context, e *env, args []string) error {
	cmd, args, err := sub(args, "list", "enable", "disable", "enable-upto", "undeploy-downto")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("patchset "+cmd, flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	feed := fs.String("feed", "main", "the `FEED`")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	st, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if cmd == "list" {
		list, err := st.FeedPatchsets(ctx, *feed)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PATCHSET\tRELEASED\tENABLED")
		for _, p := range list {
			fmt.Fprintf(tw, "%s\t%s\t%v\n", p.Patchset, p.Released.UTC().Format("2006-01-02 15:04"), p.Enabled)
		}
		return tw.Flush()
	}
	if len(pos) != 1 {
		return usageErr("give the patchset")
	}
	before, _ := store.EnabledPatchsets(ctx, st, *feed)
	names, err := server.ManagePatchsets(ctx, st, *feed, pos[0], apitype.PatchsetAction(cmd))
	if err != nil {
		return err
	}
	after, _ := store.EnabledPatchsets(ctx, st, *feed)
	auditChange(ctx, st, "patchset."+cmd, *feed+"/"+pos[0], strings.Join(names, ","), before, after)
	fmt.Fprintf(e.stdout, "%s in %s: %s\n", cmd, *feed, strings.Join(names, " "))
	return nil
}
