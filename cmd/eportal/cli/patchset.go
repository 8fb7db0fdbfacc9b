package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/core"
)

func patchsetCmd(e *env) *cmdline.Command {
	g := group("patchset", "patchsets in a feed: list, enable, disable, enable-upto, undeploy-downto", patchsetList(e))
	for _, a := range []struct {
		action  apitype.PatchsetAction
		summary string
	}{
		{apitype.ActionEnable, "enable a patchset in a feed"},
		{apitype.ActionDisable, "disable a patchset in a feed"},
		{apitype.ActionEnableUpTo, "enable a patchset and every older one"},
		{apitype.ActionUndeployDownTo, "disable a patchset and every newer one"},
	} {
		g.Sub = append(g.Sub, patchsetAction(e, a.action, a.summary))
	}
	g.Sub = append(g.Sub, patchsetUrgent(e))
	return g
}

func patchsetList(e *env) *cmdline.Command {
	fs := flags("patchset list")
	db := withDB(fs)
	feed := fs.String("feed", "main", "the `FEED`")
	return &cmdline.Command{Name: "list", Summary: "list the patchsets and whether each is enabled in a feed", Flags: fs,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
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
		})}
}

func patchsetAction(e *env, action apitype.PatchsetAction, summary string) *cmdline.Command {
	fs := flags("patchset " + string(action))
	db := withDB(fs)
	feed := fs.String("feed", "main", "the `FEED`")
	return &cmdline.Command{Name: string(action), Args: "PATCHSET", Summary: summary, Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			names, err := c.ManagePatchsets(ctx, core.CLI, *feed, args[0], action)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s in %s: %s\n", action, *feed, strings.Join(names, " "))
			return err
		})}
}
