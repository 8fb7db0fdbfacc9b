package cli

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/core"
)

// publisherCmd manages the publisher keys a bundle must be signed by,
// kept in the database so that every replica of the portal trusts them.
func publisherCmd(e *env) *cmdline.Command {
	addFS := flags("publisher add")
	addDB := withDB(addFS)
	add := &cmdline.Command{Name: "add", Args: "FILE.pub...", Summary: "trust the publisher keys in the files (as gpg --export --armor writes them)",
		Flags: addFS, MinArgs: 1, MaxArgs: -1,
		Run: withCore(e, addDB, func(ctx context.Context, c *core.Core, args []string) error {
			for _, file := range args {
				data, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				added, err := c.AddPublisherKeys(ctx, core.CLI, data)
				if err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
				for _, k := range added {
					fmt.Fprintf(e.stdout, "%s %s\n", k.Fingerprint, k.Name)
				}
			}
			return nil
		})}
	listFS := flags("publisher list")
	listDB := withDB(listFS)
	pubKeys := listFS.String("publisher-keys", "", "also the keys of this `PATH` (default DATA/publishers)")
	list := &cmdline.Command{Name: "list", Summary: "list the publisher keys trusted, from the database and the publishers directory", Flags: listFS,
		Run: func(ctx context.Context, args []string) error {
			dir, err := publisherKeys(listDB.data, *pubKeys)
			if err != nil {
				return err
			}
			c, st, err := listDB.openWith(ctx, e, dir)
			if err != nil {
				return err
			}
			defer st.Close()
			keys, err := c.PublisherKeys(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FINGERPRINT\tNAME\tSOURCE")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Fingerprint, dash(k.Name), k.Source)
			}
			return tw.Flush()
		}}
	rmFS := flags("publisher remove")
	rmDB := withDB(rmFS)
	rm := &cmdline.Command{Name: "remove", Args: "FINGERPRINT", Summary: "stop trusting a publisher key of the database (its whole fingerprint or last 16 hex digits)",
		Flags: rmFS, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, rmDB, func(ctx context.Context, c *core.Core, args []string) error {
			k, err := c.RemovePublisherKey(ctx, core.CLI, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "removed %s %s\n", k.Fingerprint, k.Name)
			return err
		})}
	return group("publisher", "publisher keys bundles must be signed by: add FILE.pub, list, remove FINGERPRINT", add, list, rm)
}
