package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
)

// runReseller manages resellers: logins that own IP ranges and watch them
// through /api/kcare/nagios-res/{login}/{token}.
func runReseller(ctx context.Context, e *env, args []string) error {
	cmd, args, err := sub(args, "add", "token", "list", "delete")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("reseller "+cmd, flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	var cidrs listFlag
	fs.Var(&cidrs, "cidr", "an IP range `CIDR` the reseller owns (repeatable)")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	c, st, err := db.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	switch cmd {
	case "add":
		if len(pos) != 1 {
			return usageErr("give the reseller's login")
		}
		return c.AddReseller(ctx, core.CLI, &store.Reseller{Login: pos[0], CIDRs: cidrs})
	case "token":
		if len(pos) != 1 {
			return usageErr("give the reseller's login")
		}
		tok, err := c.NewResellerToken(ctx, core.CLI, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, tok)
	case "list":
		list, err := c.Resellers(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LOGIN\tTOKEN\tIP RANGES")
		for _, r := range list {
			tok := "no"
			if len(r.TokenHash) > 0 {
				tok = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Login, tok, dash(strings.Join(r.CIDRs, ",")))
		}
		return tw.Flush()
	case "delete":
		if len(pos) != 1 {
			return usageErr("give the reseller's login")
		}
		return c.DeleteReseller(ctx, core.CLI, pos[0])
	}
	return nil
}
