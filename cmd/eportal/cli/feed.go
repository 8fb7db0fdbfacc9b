package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/store"
)

func runFeed(ctx context.Context, e *env, args []string) error {
	cmd, args, err := sub(args, "add", "list", "edit", "delete")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("feed "+cmd, flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	channel := fs.String("channel", "stable", "`CHANNEL`: stable or test")
	after := fs.Int("deploy-after", 0, "hold levels back `HOURS` after release")
	auto := fs.Bool("auto", false, "enable new patchsets in this feed when they are published")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *channel != "stable" && *channel != "test" {
		return usageErr("--channel: stable or test")
	}
	st, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	switch cmd {
	case "add":
		if len(pos) != 1 {
			return usageErr("give the feed's name")
		}
		f := &store.Feed{Name: pos[0], Channel: apitype.Channel(*channel), DeployAfter: time.Duration(*after) * time.Hour, Auto: *auto, Created: now()}
		if err := st.AddFeed(ctx, f); err != nil {
			return err
		}
		auditChange(ctx, st, "feed.add", f.Name, fmt.Sprintf("channel=%s deploy_after=%dh auto=%v", f.Channel, *after, f.Auto), nil, f)
	case "list":
		feeds, err := st.Feeds(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FEED\tCHANNEL\tDEPLOY AFTER\tAUTO")
		for _, f := range feeds {
			fmt.Fprintf(tw, "%s\t%s\t%dh\t%v\n", f.Name, f.Channel, int(f.DeployAfter/time.Hour), f.Auto)
		}
		return tw.Flush()
	case "edit":
		if len(pos) != 1 {
			return usageErr("give the feed to edit")
		}
		f, err := st.Feed(ctx, pos[0])
		if err != nil {
			return err
		}
		before := *f
		if set["channel"] {
			f.Channel = apitype.Channel(*channel)
		}
		if set["deploy-after"] {
			f.DeployAfter = time.Duration(*after) * time.Hour
		}
		if set["auto"] {
			f.Auto = *auto
		}
		if err := st.UpdateFeed(ctx, f); err != nil {
			return err
		}
		auditChange(ctx, st, "feed.edit", f.Name, fmt.Sprintf("channel=%s deploy_after=%s auto=%v", f.Channel, f.DeployAfter, f.Auto), before, f)
	case "delete":
		if len(pos) != 1 {
			return usageErr("give the feed to delete")
		}
		before, err := st.Feed(ctx, pos[0])
		if err != nil {
			return err
		}
		if err := st.DeleteFeed(ctx, pos[0]); err != nil {
			return err
		}
		auditChange(ctx, st, "feed.delete", pos[0], "keys moved to main", before, nil)
	}
	return nil
}
