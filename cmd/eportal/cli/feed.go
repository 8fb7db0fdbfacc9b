package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/core"
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
	if !apitype.Channel(*channel).Valid() {
		return usageErr("--channel: stable or test")
	}
	c, st, err := db.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	switch cmd {
	case "add":
		if len(pos) != 1 {
			return usageErr("give the feed's name")
		}
		return c.AddFeed(ctx, core.CLI, &store.Feed{Name: pos[0], Channel: apitype.Channel(*channel), DeployAfter: time.Duration(*after) * time.Hour, Auto: *auto})
	case "list":
		feeds, err := c.Feeds(ctx)
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
		_, err := c.EditFeed(ctx, core.CLI, pos[0], func(f *store.Feed) {
			if set["channel"] {
				f.Channel = apitype.Channel(*channel)
			}
			if set["deploy-after"] {
				f.DeployAfter = time.Duration(*after) * time.Hour
			}
			if set["auto"] {
				f.Auto = *auto
			}
		})
		return err
	case "delete":
		if len(pos) != 1 {
			return usageErr("give the feed to delete")
		}
		return c.DeleteFeed(ctx, core.CLI, pos[0])
	}
	return nil
}
