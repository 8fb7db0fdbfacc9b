package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/portal/auth"
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
	st, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	rs, ok := st.(store.ResellerStore)
	if !ok {
		return errors.New("this store keeps no resellers")
	}
	switch cmd {
	case "add":
		if len(pos) != 1 {
			return usageErr("give the reseller's login")
		}
		r := &store.Reseller{Login: pos[0], CIDRs: cidrs, Created: now()}
		if err := rs.AddReseller(ctx, r); err != nil {
			return err
		}
		auditChange(ctx, st, "reseller.add", r.Login, "", nil, r)
	case "token":
		if len(pos) != 1 {
			return usageErr("give the reseller's login")
		}
		tok := auth.NewSecret()
		if err := rs.SetResellerToken(ctx, pos[0], auth.HashSecret(tok)); err != nil {
			return err
		}
		auditChange(ctx, st, "reseller.token", pos[0], "new API token", nil, nil)
		fmt.Fprintln(e.stdout, tok)
	case "list":
		list, err := rs.Resellers(ctx)
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
		if err := rs.DeleteReseller(ctx, pos[0]); err != nil {
			return err
		}
		auditChange(ctx, st, "reseller.delete", pos[0], "", nil, nil)
	}
	return nil
}
