package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
)

func userCmd(e *env) *cmdline.Command {
	return group("user", "operators: add, list, delete", userAdd(e), userList(e), userDelete(e))
}

func userAdd(e *env) *cmdline.Command {
	fs := flags("user add")
	db := withDB(fs)
	role := fs.String("role", "readonly", "`ROLE`: admin or readonly")
	return &cmdline.Command{Name: "add", Args: "NAME", Summary: "add an operator; the password is read from standard input", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: func(ctx context.Context, args []string) error {
			if !apitype.Role(*role).Valid() {
				return usageErr("--role: admin or readonly")
			}
			line, err := bufio.NewReader(e.stdin).ReadString('\n')
			if err != nil && line == "" {
				return errors.New("read the password from standard input: none given")
			}
			hash, err := auth.HashPassword(strings.TrimRight(line, "\r\n"))
			if err != nil {
				return err
			}
			return withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
				return c.AddUser(ctx, core.CLI, args[0], hash, apitype.Role(*role))
			})(ctx, args)
		}}
}

func userList(e *env) *cmdline.Command {
	fs := flags("user list")
	db := withDB(fs)
	return &cmdline.Command{Name: "list", Summary: "list the operators", Flags: fs,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
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
		})}
}

func userDelete(e *env) *cmdline.Command {
	fs := flags("user delete")
	db := withDB(fs)
	return &cmdline.Command{Name: "delete", Args: "NAME", Summary: "delete an operator and their API keys", Flags: fs, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			return c.DeleteUser(ctx, core.CLI, args[0])
		})}
}

func tokenCmd(e *env) *cmdline.Command {
	fs := flags("token add")
	db := withDB(fs)
	user := fs.String("user", "", "the `USER` the key acts as (required)")
	note := fs.String("note", "", "a `NOTE`")
	add := &cmdline.Command{Name: "add", Summary: "make an API key and print it (shown once)", Flags: fs,
		Run: func(ctx context.Context, args []string) error {
			if *user == "" {
				return usageErr("--user is required")
			}
			return withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
				_, tok, err := c.AddToken(ctx, core.CLI, *user, *note)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(e.stdout, tok)
				return err
			})(ctx, args)
		}}
	return group("token", "API keys: add", add)
}

func ipCmd(e *env) *cmdline.Command {
	addFS := flags("ip add")
	addDB := withDB(addFS)
	feed := addFS.String("feed", "main", "`FEED` of the licensed servers")
	note := addFS.String("note", "", "a `NOTE`")
	add := &cmdline.Command{Name: "add", Args: "CIDR", Summary: "license servers in a CIDR to update without registering", Flags: addFS, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, addDB, func(ctx context.Context, c *core.Core, args []string) error {
			return c.AddIPLicense(ctx, core.CLI, &store.IPLicense{CIDR: args[0], Feed: *feed, Note: *note})
		})}
	listFS := flags("ip list")
	listDB := withDB(listFS)
	list := &cmdline.Command{Name: "list", Summary: "list the IP licenses", Flags: listFS,
		Run: withCore(e, listDB, func(ctx context.Context, c *core.Core, args []string) error {
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
		})}
	delFS := flags("ip delete")
	delDB := withDB(delFS)
	del := &cmdline.Command{Name: "delete", Args: "CIDR", Summary: "delete an IP license", Flags: delFS, MinArgs: 1, MaxArgs: 1,
		Run: withCore(e, delDB, func(ctx context.Context, c *core.Core, args []string) error {
			return c.DeleteIPLicense(ctx, core.CLI, args[0])
		})}
	return group("ip", "IP licenses: add, list, delete", add, list, del)
}
