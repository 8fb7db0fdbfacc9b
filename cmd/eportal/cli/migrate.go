package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
)

// migrateEnv is the environment variable migrate reads the source's
// password from when --password-file is not given.
const migrateEnv = "EPORTAL_PASSWORD"

// migrateCmd copies an ePortal's feeds and keys here through ePortal's
// REST API, and lists its servers.
func migrateCmd(e *env) *cmdline.Command {
	fs := flags("migrate")
	db := withDB(fs)
	from := fs.String("from", "", "the ePortal to copy from, `URL` (https://old-eportal.example.com)")
	user := fs.String("user", "", "an ePortal API `USER` (basic auth)")
	pwFile := fs.String("password-file", "", "read the user's password from `FILE` (or set "+migrateEnv+"); never on the command line")
	dry := fs.Bool("dry-run", false, "print what would be done, change nothing")
	return &cmdline.Command{Name: "migrate", Summary: "copy an ePortal's feeds and keys here through its REST API; list its servers", Flags: fs,
		Run: func(ctx context.Context, args []string) error {
			if *from == "" || *user == "" {
				return usageErr("--from URL and --user NAME are needed")
			}
			u, err := url.Parse(*from)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				return usageErr("--from: an http or https URL, without a user or password in it")
			}
			pw, err := migratePassword(*pwFile)
			if err != nil {
				return err
			}
			src := &ePortalAPI{base: strings.TrimRight(u.String(), "/"), user: *user, password: pw,
				http: &http.Client{Timeout: time.Minute}}
			return withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
				return migrate(ctx, c, src, *dry, e.stdout)
			})(ctx, args)
		}}
}

// migratePassword reads the source's password from file, or else the
// environment.
func migratePassword(file string) (string, error) {
	env, inEnv := os.LookupEnv(migrateEnv)
	switch {
	case file != "" && inEnv:
		return "", usageErr("--password-file and %s: give one", migrateEnv)
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, 64<<10))
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("--password-file %s is empty", file)
		}
		return pw, nil
	case inEnv && env != "":
		return env, nil
	}
	return "", usageErr("the password: --password-file FILE or %s", migrateEnv)
}

// ePortalAPI is the source ePortal's REST API, as TuxCare documents it.
type ePortalAPI struct {
	base, user, password string
	http                 *http.Client
}

// get reads path's JSON answer into v.
func (a *ePortalAPI) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(a.user, a.password)
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: not ePortal's answer: %w", path, err)
	}
	return nil
}

// The source's objects, as ePortal's API answers them; the fields kcare's
// portal adds are read when there.
type (
	srcFeed struct {
		Name        string `json:"name"`
		Auto        bool   `json:"auto"`
		DeployAfter int    `json:"deploy_after"`
		Channel     string `json:"channel"`
	}
	srcKey struct {
		Key         string   `json:"key"`
		Feed        string   `json:"feed"`
		Note        *string  `json:"note"`
		ServerLimit int      `json:"server_limit"`
		Sticky      string   `json:"sticky_patch"`
		IPRanges    []string `json:"ip_ranges"`
	}
	srcServer struct {
		ID       string `json:"id"`
		Hostname string `json:"hostname"`
		IP       string `json:"ip"`
		Key      string `json:"key"`
	}
)

// migrate copies src's feeds and keys into c (changing one that differs,
// leaving one that is the same), then lists src's servers by key; dry
// prints what it would do and changes nothing. Every line it prints says
// one thing it did, would do, or left.
func migrate(ctx context.Context, c *core.Core, src *ePortalAPI, dry bool, out io.Writer) error {
	would := ""
	if dry {
		would = "would "
	}
	var feeds apitype.Result[[]srcFeed]
	if err := src.get(ctx, "/admin/api/feeds/", &feeds); err != nil {
		return err
	}
	var keys apitype.Result[[]srcKey]
	if err := src.get(ctx, "/admin/api/keys/", &keys); err != nil {
		return err
	}
	var servers []srcServer
	for offset := 0; ; {
		var page apitype.Page[srcServer]
		if err := src.get(ctx, fmt.Sprintf("/admin/api/servers?limit=100&offset=%d", offset), &page); err != nil {
			return err
		}
		servers = append(servers, page.Result...)
		offset += len(page.Result)
		if len(page.Result) == 0 || offset >= page.Count {
			break
		}
	}
	changes := 0
	for _, sf := range feeds.Result {
		if sf.Name == apitype.MainFeed {
			continue // every portal has it; ePortal's cannot be changed
		}
		ch, err := apitype.ParseFeedChannel(sf.Channel)
		if err != nil {
			return fmt.Errorf("feed %s: %w", sf.Name, err)
		}
		want := store.Feed{Name: sf.Name, Channel: ch, DeployAfter: time.Duration(sf.DeployAfter) * time.Hour, Auto: sf.Auto}
		desc := fmt.Sprintf("channel %s, deploy after %dh, auto %v", ch, sf.DeployAfter, sf.Auto)
		have, err := c.Feed(ctx, sf.Name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			fmt.Fprintf(out, "%sadd feed %s (%s)\n", would, sf.Name, desc)
			changes++
			if !dry {
				if err := c.AddFeed(ctx, core.CLI, &want); err != nil {
					return err
				}
			}
		case err != nil:
			return err
		case have.Channel == want.Channel && have.DeployAfter == want.DeployAfter && have.Auto == want.Auto:
			fmt.Fprintf(out, "feed %s: already here\n", sf.Name)
		default:
			fmt.Fprintf(out, "%schange feed %s to %s\n", would, sf.Name, desc)
			changes++
			if !dry {
				if _, err := c.EditFeed(ctx, core.CLI, sf.Name, func(f *store.Feed) {
					f.Channel, f.DeployAfter, f.Auto = want.Channel, want.DeployAfter, want.Auto
				}); err != nil {
					return err
				}
			}
		}
	}
	for _, sk := range keys.Result {
		if sk.Key == "" {
			return errors.New("the source lists a key with no name")
		}
		want := store.Key{Key: sk.Key, Feed: sk.Feed, Limit: sk.ServerLimit, Sticky: sk.Sticky, IPRanges: sk.IPRanges}
		if want.Feed == "" {
			want.Feed = apitype.MainFeed
		}
		if sk.Note != nil {
			want.Note = *sk.Note
		}
		name := sk.Key // shown whole, as eportal key list shows keys to the portal's admin
		desc := fmt.Sprintf("feed %s, limit %d, note %q", want.Feed, want.Limit, want.Note)
		if want.Sticky != "" {
			desc += ", sticky " + want.Sticky
		}
		have, err := c.Key(ctx, sk.Key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			fmt.Fprintf(out, "%sadd key %s (%s)\n", would, name, desc)
			changes++
			if !dry {
				k := want
				if err := c.AddKey(ctx, core.CLI, &k); err != nil {
					return fmt.Errorf("key %s: %w", name, err)
				}
			}
		case err != nil:
			return err
		case have.Feed == want.Feed && have.Limit == want.Limit && have.Note == want.Note && have.Sticky == want.Sticky &&
			slices.Equal(nonNil(have.IPRanges), nonNil(want.IPRanges)):
			fmt.Fprintf(out, "key %s: already here\n", name)
		default:
			fmt.Fprintf(out, "%schange key %s to %s\n", would, name, desc)
			changes++
			if !dry {
				if _, err := c.EditKey(ctx, core.CLI, sk.Key, func(k *store.Key) {
					k.Feed, k.Limit, k.Note, k.Sticky, k.IPRanges = want.Feed, want.Limit, want.Note, want.Sticky, want.IPRanges
				}); err != nil {
					return fmt.Errorf("key %s: %w", name, err)
				}
			}
		}
	}
	byKey := map[string]int{}
	var order []string
	for _, s := range servers {
		if byKey[s.Key] == 0 {
			order = append(order, s.Key)
		}
		byKey[s.Key]++
	}
	for _, k := range order {
		fmt.Fprintf(out, "servers: %d under key %s: run kcarectl --register on each (ePortal's API gives no server secret to carry over)\n",
			byKey[k], k)
	}
	fmt.Fprintf(out, "%d feeds, %d keys, %d servers read; %d changes %s\n", len(feeds.Result), len(keys.Result), len(servers), changes,
		map[bool]string{true: "to make (dry run: nothing changed)", false: "made"}[dry])
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
