package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
)

// resellerCmd manages resellers: logins that own IP ranges and watch them
// through /api/kcare/nagios-res/{login}/{token}.
func resellerCmd(e *env) *cmdline.Command {
	addFS := flags("reseller add")
	addDB := withDB(addFS)
	var cidrs listFlag
	addFS.Var(&cidrs, "cidr", "an IP range `CIDR` the reseller owns (repeatable)")
	add := &cmdline.Command{Name: "add", Args: "LOGIN", Summary: "add a reseller with its IP ranges", Flags: addFS, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, addDB, func(ctx context.Context, c *core.Core, args []string) error {
			return c.AddReseller(ctx, core.CLI, &store.Reseller{Login: args[0], CIDRs: cidrs})
		})}
	tokFS := flags("reseller token")
	tokDB := withDB(tokFS)
	tok := &cmdline.Command{Name: "token", Args: "LOGIN", Summary: "make a reseller's API token and print it (shown once)", Flags: tokFS, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, tokDB, func(ctx context.Context, c *core.Core, args []string) error {
			t, err := c.NewResellerToken(ctx, core.CLI, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, t)
			return err
		})}
	listFS := flags("reseller list")
	listDB := withDB(listFS)
	list := &cmdline.Command{Name: "list", Summary: "list the resellers", Flags: listFS,
		Run: withCore(e, listDB, func(ctx context.Context, c *core.Core, args []string) error {
			list, err := c.Resellers(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LOGIN\tTOKEN\tIP RANGES")
			for _, r := range list {
				has := "no"
				if len(r.TokenHash) > 0 {
					has = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Login, has, dash(strings.Join(r.CIDRs, ",")))
			}
			return tw.Flush()
		})}
	delFS := flags("reseller delete")
	delDB := withDB(delFS)
	del := &cmdline.Command{Name: "delete", Args: "LOGIN", Summary: "delete a reseller", Flags: delFS, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, delDB, func(ctx context.Context, c *core.Core, args []string) error {
			return c.DeleteReseller(ctx, core.CLI, args[0])
		})}
	return group("reseller", "resellers for the Nagios reseller API: add, token, list, delete", add, tok, list, del)
}
