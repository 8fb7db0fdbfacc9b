package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
)

func runUser(ctx context.Context, e *env, args []string) error {
	cmd, args, err := sub(args, "add", "list", "delete")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("user "+cmd, flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	role := fs.String("role", "readonly", "`ROLE`: admin or readonly")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	if *role != "admin" && *role != "readonly" {
		return usageErr("--role: admin or readonly")
	}
	c, st, err := db.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	switch cmd {
	case "add":
		if len(pos) != 1 {
			return usageErr("give the user name")
		}
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return errors.New("read the password from standard input: none given")
		}
		hash, err := auth.HashPassword(strings.TrimRight(line, "\r\n"))
		if err != nil {
			return err
		}
		return c.AddUser(ctx, core.CLI, pos[0], hash, apitype.Role(*role))
	case "list":
		users, err := c.Users(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tROLE\tCREATED")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Role, u.Created.UTC().Format("2006-01-02"))
		}
		return tw.Flush()
	case "delete":
		if len(pos) != 1 {
			return usageErr("give the user name")
		}
		return c.DeleteUser(ctx, core.CLI, pos[0])
	}
	return nil
}

func runToken(ctx context.Context, e *env, args []string) error {
	cmd, args, err := sub(args, "add")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("token "+cmd, flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	user := fs.String("user", "", "the `USER` the key acts as")
	note := fs.String("note", "", "a `NOTE`")
	if _, err := parse(fs, e, args); err != nil {
		return err
	}
	if *user == "" {
		return usageErr("--user is required")
	}
	c, st, err := db.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	_, tok, err := c.AddToken(ctx, core.CLI, *user, *note)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}

func runIP(ctx context.Context, e *env, args []string) error {
	cmd, args, err := sub(args, "add", "list", "delete")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("ip "+cmd, flag.ContinueOnError)
	var db dbFlags
	db.register(fs)
	feed := fs.String("feed", "main", "`FEED` of the licensed servers")
	note := fs.String("note", "", "a `NOTE`")
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
			return usageErr("give the CIDR")
		}
		return c.AddIPLicense(ctx, core.CLI, &store.IPLicense{CIDR: pos[0], Feed: *feed, Note: *note})
	case "list":
		list, err := c.IPLicenses(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CIDR\tFEED\tNOTE")
		for _, l := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", l.CIDR, l.Feed, l.Note)
		}
		return tw.Flush()
	case "delete":
		if len(pos) != 1 {
			return usageErr("give the CIDR")
		}
		return c.DeleteIPLicense(ctx, core.CLI, pos[0])
	}
	return nil
}
