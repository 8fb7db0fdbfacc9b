package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/portal/core"
)

// runPublisher manages the publisher keys a bundle must be signed by,
// kept in the database so that every replica of the portal trusts them.
func runPublisher(ctx context.Context, e *env, args []string) error {
	cmd, args, err := sub(args, "add", "list", "remove")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("publisher "+cmd, flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	pubKeys := fs.String("publisher-keys", "", "list: also the keys of this `PATH` (default DATA/publishers)")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	switch cmd {
	case "add":
		if len(pos) == 0 {
			return usageErr("give the publisher's public key file (FILE.pub, as gpg --export --armor writes it)")
		}
	case "remove":
		if len(pos) != 1 {
			return usageErr("give the key's fingerprint (eportal publisher list shows it)")
		}
	case "list":
		if len(pos) != 0 {
			return usageErr("unexpected argument %q", pos[0])
		}
	}
	dir, err := publisherKeys(db.data, *pubKeys)
	if err != nil {
		return err
	}
	c, st, err := db.openWith(ctx, e, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	switch cmd {
	case "add":
		for _, file := range pos {
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
	case "list":
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
	case "remove":
		k, err := c.RemovePublisherKey(ctx, core.CLI, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed %s %s\n", k.Fingerprint, k.Name)
	}
	return nil
}
