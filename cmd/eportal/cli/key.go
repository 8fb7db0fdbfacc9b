package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
)

func runKey(ctx context.Context, e *env, args []string) error {
	cmd, args, err := sub(args, "add", "list", "edit", "delete")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("key "+cmd, flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	value := fs.String("key", "", "the key `VALUE` (default: random)")
	note := fs.String("note", "", "a `NOTE`")
	limit := fs.Int("limit", 0, "server `LIMIT` (0: unlimited)")
	feed := fs.String("feed", "main", "`FEED` of its servers")
	sticky := fs.String("sticky", "", "sticky patchset `DATE` (DDMMYY, DDMMYYYY or YYYY-MM-DD)")
	var ranges listFlag
	fs.Var(&ranges, "ip-range", "`CIDR` registering servers must be in (repeatable)")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *sticky != "" {
		if _, err := config.ParseStickyDate(*sticky); err != nil {
			return usageErr("--sticky: %v", err)
		}
	}
	c, st, err := db.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	switch cmd {
	case "add":
		if len(pos) != 0 {
			return usageErr("unexpected argument %q", pos[0])
		}
		k := &store.Key{Key: *value, Note: *note, Limit: *limit, Feed: *feed, Sticky: *sticky, IPRanges: ranges}
		if err := c.AddKey(ctx, core.CLI, k); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, k.Key)
	case "list":
		keys, err := c.Keys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tFEED\tLIMIT\tSERVERS\tSTICKY\tIP RANGES\tNOTE")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", k.Key, k.Feed, k.Limit, k.Servers, dash(k.Sticky), dash(strings.Join(k.IPRanges, ",")), k.Note)
		}
		return tw.Flush()
	case "edit":
		if len(pos) != 1 {
			return usageErr("give the key to edit")
		}
		_, err := c.EditKey(ctx, core.CLI, pos[0], func(k *store.Key) {
			if set["note"] {
				k.Note = *note
			}
			if set["limit"] {
				k.Limit = *limit
			}
			if set["feed"] {
				k.Feed = *feed
			}
			if set["sticky"] {
				k.Sticky = *sticky
			}
			if set["ip-range"] {
				k.IPRanges = ranges
			}
		})
		return err
	case "delete":
		if len(pos) != 1 {
			return usageErr("give the key to delete")
		}
		return c.DeleteKey(ctx, core.CLI, pos[0])
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
