package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
)

func keyCmd(e *env) *cmdline.Command {
	return group("key", "activation keys: add, list, edit, delete, window", keyAdd(e), keyList(e), keyEdit(e), keyDelete(e), keyWindow(e))
}

// keySettings are the flags that set a key's settings.
type keySettings struct {
	note, feed, sticky string
	limit              int
	ranges             listFlag
}

func withKeySettings(fs *flag.FlagSet) *keySettings {
	k := &keySettings{}
	fs.StringVar(&k.note, "note", "", "a `NOTE`")
	fs.IntVar(&k.limit, "limit", 0, "server `LIMIT` (0: unlimited)")
	fs.StringVar(&k.feed, "feed", "main", "`FEED` of its servers")
	fs.StringVar(&k.sticky, "sticky", "", "sticky patchset `DATE` (DDMMYY, DDMMYYYY or YYYY-MM-DD)")
	fs.Var(&k.ranges, "ip-range", "`CIDR` registering servers must be in (repeatable)")
	return k
}

// check refuses a sticky date STICKY_PATCH would not take.
func (k *keySettings) check() error {
	if k.sticky != "" {
		if _, err := config.ParseStickyDate(k.sticky); err != nil {
			return usageErr("--sticky: %v", err)
		}
	}
	return nil
}

func keyAdd(e *env) *cmdline.Command {
	fs := flags("key add")
	db := withDB(fs)
	value := fs.String("key", "", "the key `VALUE` (default: random)")
	ks := withKeySettings(fs)
	return &cmdline.Command{Name: "add", Summary: "add an activation key and print it", Flags: fs,
		Run: func(ctx context.Context, args []string) error {
			if err := ks.check(); err != nil {
				return err
			}
			return withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
				k := &store.Key{Key: *value, Note: ks.note, Limit: ks.limit, Feed: ks.feed, Sticky: ks.sticky, IPRanges: ks.ranges}
				if err := c.AddKey(ctx, core.CLI, k); err != nil {
					return err
				}
				_, err := fmt.Fprintln(e.stdout, k.Key)
				return err
			})(ctx, args)
		}}
}

func keyList(e *env) *cmdline.Command {
	fs := flags("key list")
	db := withDB(fs)
	return &cmdline.Command{Name: "list", Summary: "list the keys with their servers", Flags: fs,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
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
		})}
}

func keyEdit(e *env) *cmdline.Command {
	fs := flags("key edit")
	db := withDB(fs)
	ks := withKeySettings(fs)
	return &cmdline.Command{Name: "edit", Args: "KEY", Summary: "change the settings given of a key", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: func(ctx context.Context, args []string) error {
			if err := ks.check(); err != nil {
				return err
			}
			given := set(fs)
			return withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
				_, err := c.EditKey(ctx, core.CLI, args[0], func(k *store.Key) {
					if given["note"] {
						k.Note = ks.note
					}
					if given["limit"] {
						k.Limit = ks.limit
					}
					if given["feed"] {
						k.Feed = ks.feed
					}
					if given["sticky"] {
						k.Sticky = ks.sticky
					}
					if given["ip-range"] {
						k.IPRanges = ks.ranges
					}
				})
				return err
			})(ctx, args)
		}}
}

func keyDelete(e *env) *cmdline.Command {
	fs := flags("key delete")
	db := withDB(fs)
	return &cmdline.Command{Name: "delete", Args: "KEY", Summary: "delete a key and unregister its servers", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			return c.DeleteKey(ctx, core.CLI, args[0])
		})}
}
