package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
)

func feedCmd(e *env) *cmdline.Command {
	return group("feed", "feeds: add, list, edit, delete", feedAdd(e), feedList(e), feedEdit(e), feedDelete(e))
}

// feedSettings are the flags that set a feed's settings.
type feedSettings struct {
	channel string
	after   int
	auto    bool
}

func withFeedSettings(fs *flag.FlagSet) *feedSettings {
	f := &feedSettings{}
	fs.StringVar(&f.channel, "channel", "stable", "`CHANNEL`: stable or test")
	fs.IntVar(&f.after, "deploy-after", 0, "hold levels back `HOURS` after release")
	fs.BoolVar(&f.auto, "auto", false, "enable new patchsets in this feed when they are published")
	return f
}

func (f *feedSettings) check() error {
	if !apitype.Channel(f.channel).Valid() {
		return usageErr("--channel: stable or test")
	}
	if f.after < 0 {
		return usageErr("--deploy-after: whole hours, 0 or more")
	}
	return nil
}

func feedAdd(e *env) *cmdline.Command {
	fs := flags("feed add")
	db := withDB(fs)
	fsets := withFeedSettings(fs)
	return &cmdline.Command{Name: "add", Args: "NAME", Summary: "add a feed with no patchsets enabled", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: func(ctx context.Context, args []string) error {
			if err := fsets.check(); err != nil {
				return err
			}
			return withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
				return c.AddFeed(ctx, core.CLI, &store.Feed{Name: args[0], Channel: apitype.Channel(fsets.channel),
					DeployAfter: time.Duration(fsets.after) * time.Hour, Auto: fsets.auto})
			})(ctx, args)
		}}
}

func feedList(e *env) *cmdline.Command {
	fs := flags("feed list")
	db := withDB(fs)
	return &cmdline.Command{Name: "list", Summary: "list the feeds", Flags: fs,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
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
		})}
}

func feedEdit(e *env) *cmdline.Command {
	fs := flags("feed edit")
	db := withDB(fs)
	fsets := withFeedSettings(fs)
	return &cmdline.Command{Name: "edit", Args: "NAME", Summary: "change the settings given of a feed", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: func(ctx context.Context, args []string) error {
			if err := fsets.check(); err != nil {
				return err
			}
			given := set(fs)
			return withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
				_, err := c.EditFeed(ctx, core.CLI, args[0], func(f *store.Feed) {
					if given["channel"] {
						f.Channel = apitype.Channel(fsets.channel)
					}
					if given["deploy-after"] {
						f.DeployAfter = time.Duration(fsets.after) * time.Hour
					}
					if given["auto"] {
						f.Auto = fsets.auto
					}
				})
				return err
			})(ctx, args)
		}}
}

func feedDelete(e *env) *cmdline.Command {
	fs := flags("feed delete")
	db := withDB(fs)
	return &cmdline.Command{Name: "delete", Args: "NAME", Summary: "delete a feed; its keys and IP licenses move to main", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			return c.DeleteFeed(ctx, core.CLI, args[0])
		})}
}
