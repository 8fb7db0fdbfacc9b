package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/core"
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
	c, st, err := db.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	if cmd == "list" {
		list, err := c.FeedPatchsets(ctx, *feed)
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
	names, err := c.ManagePatchsets(ctx, core.CLI, *feed, pos[0], apitype.PatchsetAction(cmd))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s in %s: %s\n", cmd, *feed, strings.Join(names, " "))
	return nil
}
