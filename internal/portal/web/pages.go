package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/fleet"
	"github.com/kcare/kcare/internal/portal/store"
)

// Overview.

type overview struct {
	Stats              store.FleetStats
	Kernels, Effective []store.Count
	At                 time.Time
}

// statsTTL is how long the overview's counts are reused: they scan the
// whole servers table.
const statsTTL = 30 * time.Second

func (u *UI) overview(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	u.statsMu.Lock()
	defer u.statsMu.Unlock()
	now := u.now()
	if u.stats == nil || now.Sub(u.statsAt) > statsTTL || now.Before(u.statsAt) {
		st, err := u.cfg.Store.Stats(r.Context(), now, u.cfg.InactiveAge)
		if err != nil {
			return err
		}
		k, e, err := u.cfg.Store.TopKernels(r.Context(), 10)
		if err != nil {
			return err
		}
		u.stats, u.statsAt = &overview{Stats: st, Kernels: k, Effective: e, At: now}, now
	}
	u.render(w, r, c, http.StatusOK, "overview", "Overview", u.stats)
	return nil
}

// Servers.

type serverRow struct {
	fleet.Classified
	Marker bool   // has not the newest level it is allowed
	Feed   string // its key's feed; "" for an IP-licensed server
}

// keyFeed returns the feed of key, looking each key up once per page.
func (u *UI) keyFeed(ctx context.Context, seen map[string]string, key string) string {
	if key == "" {
		return ""
	}
	if f, ok := seen[key]; ok {
		return f
	}
	f := ""
	if k, err := u.cfg.Store.Key(ctx, key); err == nil {
		f = k.Feed
	}
	seen[key] = f
	return f
}

// stateFilter maps a state to the store's filters, so the servers page
// filters in SQL.
func (u *UI) stateFilter(f *store.ServerFilter, state string) error {
	yes, no := true, false
	f.Now = u.now()
	switch state {
	case "":
	case string(fleet.Inactive):
		f.CheckinAge = u.cfg.InactiveAge
	case string(fleet.Unsupported):
		f.ActiveWithin, f.Unsupported = u.cfg.InactiveAge, &yes
	case string(fleet.OutOfDate):
		f.ActiveWithin, f.IsUpdated = u.cfg.InactiveAge, &no
	case string(fleet.UpToDate):
		f.ActiveWithin, f.IsUpdated, f.Unsupported = u.cfg.InactiveAge, &yes, &no
	default:
		return errorf(http.StatusBadRequest, "state: one of uptodate, outofdate, unsupported, inactive")
	}
	return nil
}

// serverList reads one page of servers by the query q and classifies it.
func (u *UI) serverList(ctx context.Context, q url.Values, f store.ServerFilter) ([]serverRow, string, error) {
	if err := u.stateFilter(&f, q.Get("state")); err != nil {
		return nil, "", err
	}
	f.Sort = q.Get("sort")
	if f.Sort != "" && !slices.Contains(store.SortColumns, f.Sort) {
		return nil, "", errorf(http.StatusBadRequest, "sort: one of %s", strings.Join(store.SortColumns, ", "))
	}
	f.Desc = q.Get("desc") == "1"
	if id := q.Get("after_id"); id != "" {
		f.After = &store.Cursor{Value: q.Get("after"), ID: id}
	}
	f.Limit = PageSize + 1
	list, err := u.cfg.Store.Servers(ctx, f)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(list) > PageSize {
		list = list[:PageSize]
		c := store.CursorOf(list[len(list)-1], f.Sort)
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("after", c.Value)
		nq.Set("after_id", c.ID)
		next = nq.Encode()
	}
	ev := &fleet.Evaluator{Store: u.cfg.Store, Now: u.now(), InactiveAge: u.cfg.InactiveAge}
	cs, err := ev.Classify(ctx, list)
	if err != nil {
		return nil, "", err
	}
	rows := make([]serverRow, len(cs))
	feeds := map[string]string{}
	for i, c := range cs {
		rows[i] = serverRow{Classified: c, Marker: c.Allowed > c.Level, Feed: u.keyFeed(ctx, feeds, c.Key)}
	}
	return rows, next, nil
}

func (u *UI) servers(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	q := r.URL.Query()
	f := store.ServerFilter{Key: q.Get("key"), Feed: q.Get("feed"), Tag: q.Get("tag"), Search: q.Get("q")}
	rows, next, err := u.serverList(r.Context(), q, f)
	if err != nil {
		return err
	}
	keys, err := u.cfg.Store.Keys(r.Context())
	if err != nil {
		return err
	}
	feeds, err := u.cfg.Store.Feeds(r.Context())
	if err != nil {
		return err
	}
	sortLink := func(col string) string {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Del("after")
		nq.Del("after_id")
		nq.Set("sort", col)
		if q.Get("sort") == col && q.Get("desc") != "1" {
			nq.Set("desc", "1")
		} else {
			nq.Del("desc")
		}
		return nq.Encode()
	}
	first := url.Values{}
	for k, v := range q {
		first[k] = v
	}
	first.Del("after")
	first.Del("after_id")
	u.render(w, r, c, http.StatusOK, "servers", "Servers", map[string]any{
		"Rows": rows, "Next": next, "First": first.Encode(), "Paged": q.Get("after_id") != "",
		"Q": q, "Keys": keys, "Feeds": feeds, "States": fleet.States,
		"SortHostname": sortLink("hostname"), "SortIP": sortLink("ip"), "SortRegistered": sortLink("registered"),
	})
	return nil
}

func (u *UI) deleteServers(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	ids := r.PostForm["id"]
	if len(ids) == 0 {
		return errorf(http.StatusBadRequest, "select at least one server")
	}
	for _, id := range ids {
		before, err := u.cfg.Store.Server(r.Context(), id)
		if err != nil {
			return storeError(err)
		}
		if err := u.cfg.Store.DeleteServer(r.Context(), id); err != nil {
			return storeError(err)
		}
		u.audit(r, c, "server.delete", id, "", serverAudit(before), nil)
	}
	return redirect(w, r, safeNext(r.PostForm.Get("back"), "/admin/servers"))
}

func serverAudit(v *store.Server) map[string]any {
	return map[string]any{"id": v.ID, "hostname": v.Hostname, "ip": v.IP, "key": store.MaskKey(v.Key),
		"kernel": v.Release, "level": v.Level, "registered": v.Registered}
}

func (u *UI) server(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	ctx := r.Context()
	v, err := u.cfg.Store.Server(ctx, r.PathValue("id"))
	if err != nil {
		return storeError(err)
	}
	ev := &fleet.Evaluator{Store: u.cfg.Store, Now: u.now(), InactiveAge: u.cfg.InactiveAge}
	cs, err := ev.Classify(ctx, []store.Server{*v})
	if err != nil {
		return err
	}
	var cves []store.CVE
	if v.BuildID != "" && v.Level > 0 {
		levels, err := u.cfg.Store.Levels(ctx, v.BuildID)
		if err != nil {
			return err
		}
		for _, l := range levels {
			if l.Level <= v.Level {
				cves = append(cves, l.CVEs...)
			}
		}
	}
	hist, err := u.cfg.Store.CheckinHistory(ctx, v.ID, 50)
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "server", "Server "+v.ID, map[string]any{
		"S": cs[0], "Marker": cs[0].Allowed > v.Level, "CVEs": cves, "History": hist})
	return nil
}

// Keys.

func (u *UI) keys(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	keys, err := u.cfg.Store.Keys(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "keys", "Keys", map[string]any{"Keys": keys})
	return nil
}

func (u *UI) key(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	k, err := u.cfg.Store.Key(r.Context(), r.PathValue("key"))
	if err != nil {
		return storeError(err)
	}
	q := r.URL.Query()
	rows, next, err := u.serverList(r.Context(), q, store.ServerFilter{Key: k.Key})
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "key", "Key "+k.Key, map[string]any{"K": k, "Rows": rows, "Next": next})
	return nil
}

func (u *UI) keyForm(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	k := &store.Key{Feed: apitype.MainFeed}
	if name := r.PathValue("key"); name != "" {
		var err error
		if k, err = u.cfg.Store.Key(r.Context(), name); err != nil {
			return storeError(err)
		}
	}
	feeds, err := u.cfg.Store.Feeds(r.Context())
	if err != nil {
		return err
	}
	title := "New key"
	if k.Key != "" {
		title = "Edit key " + k.Key
	}
	u.render(w, r, c, http.StatusOK, "keyform", title, map[string]any{"K": k, "New": k.Key == "", "Feeds": feeds})
	return nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

func (u *UI) saveKey(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	ctx := r.Context()
	f := r.PostForm
	limit := 0
	if v := strings.TrimSpace(f.Get("limit")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "server limit: a whole number, 0 for unlimited")
		}
		limit = n
	}
	sticky := strings.TrimSpace(f.Get("sticky"))
	if sticky != "" {
		if _, err := time.Parse("2006-01-02", sticky); err != nil {
			return errorf(http.StatusBadRequest, "sticky tag: a date as YYYY-MM-DD")
		}
	}
	k := &store.Key{Note: f.Get("note"), Limit: limit, Feed: f.Get("feed"), Sticky: sticky, IPRanges: splitList(f.Get("ip_ranges"))}
	if k.Feed == "" {
		k.Feed = apitype.MainFeed
	}
	if name := r.PathValue("key"); name != "" {
		before, err := u.cfg.Store.Key(ctx, name)
		if err != nil {
			return storeError(err)
		}
		k.Key, k.Created = name, before.Created
		if err := u.cfg.Store.UpdateKey(ctx, k); err != nil {
			return storeError(err)
		}
		after, _ := u.cfg.Store.Key(ctx, name)
		u.audit(r, c, "key.edit", name, fmt.Sprintf("feed=%s limit=%d sticky=%s", k.Feed, k.Limit, k.Sticky), keyAudit(before), keyAudit(after))
		return redirect(w, r, "/admin/keys/"+url.PathEscape(name))
	}
	k.Key = strings.TrimSpace(f.Get("key"))
	if k.Key == "" {
		k.Key = u.cfg.NewKey()
	}
	k.Created = u.now()
	if err := u.cfg.Store.AddKey(ctx, k); err != nil {
		return storeError(err)
	}
	u.audit(r, c, "key.add", k.Key, fmt.Sprintf("feed=%s limit=%d", k.Feed, k.Limit), nil, keyAudit(k))
	return redirect(w, r, "/admin/keys/"+url.PathEscape(k.Key))
}

func keyAudit(k *store.Key) map[string]any {
	if k == nil {
		return nil
	}
	ranges := k.IPRanges
	if ranges == nil {
		ranges = []string{}
	}
	return map[string]any{"key": store.MaskKey(k.Key), "note": k.Note, "limit": k.Limit, "feed": k.Feed, "sticky": k.Sticky, "ip_ranges": ranges}
}

func (u *UI) confirmDeleteKey(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	k, err := u.cfg.Store.Key(r.Context(), r.PathValue("key"))
	if err != nil {
		return storeError(err)
	}
	u.render(w, r, c, http.StatusOK, "confirm", "Delete key "+k.Key, map[string]any{
		"What":   fmt.Sprintf("Delete key %s? Its %d registered servers are unregistered.", k.Key, k.Servers),
		"Action": "/admin/keys/" + url.PathEscape(k.Key) + "/delete", "Back": "/admin/keys/" + url.PathEscape(k.Key)})
	return nil
}

func (u *UI) deleteKey(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	name := r.PathValue("key")
	before, err := u.cfg.Store.Key(r.Context(), name)
	if err != nil {
		return storeError(err)
	}
	if err := u.cfg.Store.DeleteKey(r.Context(), name); err != nil {
		return storeError(err)
	}
	u.audit(r, c, "key.delete", name, "", keyAudit(before), nil)
	return redirect(w, r, "/admin/keys")
}

// Feeds.

func (u *UI) feeds(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	feeds, err := u.cfg.Store.Feeds(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "feeds", "Feeds", map[string]any{"Feeds": feeds})
	return nil
}

func feedFromForm(f url.Values, name string) (*store.Feed, error) {
	hours := 0
	if v := strings.TrimSpace(f.Get("deploy_after")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, errorf(http.StatusBadRequest, "deploy after: whole hours")
		}
		hours = n
	}
	ch := apitype.Channel(f.Get("channel"))
	if ch == "" {
		ch = apitype.ChannelStable
	}
	return &store.Feed{Name: name, Channel: ch, DeployAfter: time.Duration(hours) * time.Hour, Auto: f.Get("auto") != ""}, nil
}

func feedAudit(f *store.Feed) map[string]any {
	if f == nil {
		return nil
	}
	return map[string]any{"name": f.Name, "channel": f.Channel, "deploy_after_hours": int(f.DeployAfter / time.Hour), "auto": f.Auto}
}

func (u *UI) addFeed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	f, err := feedFromForm(r.PostForm, strings.TrimSpace(r.PostFormValue("name")))
	if err != nil {
		return err
	}
	f.Created = u.now()
	if err := u.cfg.Store.AddFeed(r.Context(), f); err != nil {
		return storeError(err)
	}
	u.audit(r, c, "feed.add", f.Name, "channel="+string(f.Channel), nil, feedAudit(f))
	return redirect(w, r, "/admin/feeds/"+url.PathEscape(f.Name))
}

func (u *UI) editFeed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	name := r.PathValue("feed")
	before, err := u.cfg.Store.Feed(r.Context(), name)
	if err != nil {
		return storeError(err)
	}
	f, err := feedFromForm(r.PostForm, name)
	if err != nil {
		return err
	}
	if err := u.cfg.Store.UpdateFeed(r.Context(), f); err != nil {
		return storeError(err)
	}
	u.audit(r, c, "feed.edit", name, "", feedAudit(before), feedAudit(f))
	return redirect(w, r, "/admin/feeds/"+url.PathEscape(name))
}

func (u *UI) confirmDeleteFeed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	f, err := u.cfg.Store.Feed(r.Context(), r.PathValue("feed"))
	if err != nil {
		return storeError(err)
	}
	u.render(w, r, c, http.StatusOK, "confirm", "Delete feed "+f.Name, map[string]any{
		"What":   fmt.Sprintf("Delete feed %s? Its keys and IP licenses move to main.", f.Name),
		"Action": "/admin/feeds/" + url.PathEscape(f.Name) + "/delete", "Back": "/admin/feeds/" + url.PathEscape(f.Name)})
	return nil
}

func (u *UI) deleteFeed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	name := r.PathValue("feed")
	before, err := u.cfg.Store.Feed(r.Context(), name)
	if err != nil {
		return storeError(err)
	}
	if err := u.cfg.Store.DeleteFeed(r.Context(), name); err != nil {
		return storeError(err)
	}
	u.audit(r, c, "feed.delete", name, "keys moved to main", feedAudit(before), nil)
	return redirect(w, r, "/admin/feeds")
}

// levelRow is one level of a kernel with its patchset's state in a feed.
type levelRow struct {
	store.Level
	State string // enabled, disabled, test, not deployed
}

type kernelLevels struct {
	store.Kernel
	Levels []levelRow
}

func (u *UI) kernelLevels(ctx context.Context, feed *store.Feed) ([]kernelLevels, error) {
	kernels, err := u.cfg.Store.Kernels(ctx)
	if err != nil {
		return nil, err
	}
	states := map[string]store.FeedPatchset{}
	if feed != nil {
		fps, err := u.cfg.Store.FeedPatchsets(ctx, feed.Name)
		if err != nil {
			return nil, err
		}
		for _, p := range fps {
			states[p.Patchset] = p
		}
	}
	out := make([]kernelLevels, len(kernels))
	for i, k := range kernels {
		levels, err := u.cfg.Store.Levels(ctx, k.BuildID)
		if err != nil {
			return nil, err
		}
		out[i].Kernel = k
		for j := len(levels) - 1; j >= 0; j-- {
			l := levels[j]
			row := levelRow{Level: l}
			if feed != nil {
				p := states[l.Patchset]
				switch {
				case !feed.Channel.Admits(l.Channel):
					row.State = "test"
				case !p.Deployed:
					row.State = "not deployed"
				case p.Enabled:
					row.State = "enabled"
				default:
					row.State = "disabled"
				}
			}
			out[i].Levels = append(out[i].Levels, row)
		}
	}
	return out, nil
}

func (u *UI) feed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	f, err := u.cfg.Store.Feed(r.Context(), r.PathValue("feed"))
	if err != nil {
		return storeError(err)
	}
	kl, err := u.kernelLevels(r.Context(), f)
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "feed", "Feed "+f.Name, map[string]any{"F": f, "Hours": int(f.DeployAfter / time.Hour), "Kernels": kl})
	return nil
}

func (u *UI) managePatchsets(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	feed, patchset, action := r.PathValue("feed"), r.PostFormValue("patchset"), apitype.PatchsetAction(r.PostFormValue("action"))
	ctx := r.Context()
	before, err := store.EnabledPatchsets(ctx, u.cfg.Store, feed)
	if err != nil {
		return storeError(err)
	}
	names, err := u.cfg.ManagePatchsets(ctx, u.cfg.Store, feed, patchset, action)
	if err != nil {
		return storeError(err)
	}
	after, _ := store.EnabledPatchsets(ctx, u.cfg.Store, feed)
	u.audit(r, c, "patchset."+string(action), feed+"/"+patchset, strings.Join(names, ","), before, after)
	return redirect(w, r, "/admin/feeds/"+url.PathEscape(feed))
}

// Patches.

func (u *UI) patches(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	kl, err := u.kernelLevels(r.Context(), nil)
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "patches", "Patches", map[string]any{"Kernels": kl, "Published": r.URL.Query().Get("published")})
	return nil
}

func (u *UI) upload(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	data, sig := c.upload["bundle"], c.upload["signature"]
	if len(data) == 0 {
		return errorf(http.StatusBadRequest, "choose the bundle file")
	}
	if len(sig) == 0 {
		return errorf(http.StatusBadRequest, "choose the signature file")
	}
	channel, patchset := apitype.Channel(c.upload["channel"]), strings.TrimSpace(string(c.upload["patchset"]))
	l, err := u.cfg.Publish(r.Context(), data, sig, channel, patchset)
	if err != nil {
		if errors.Is(err, store.ErrExists) {
			return &webError{code: http.StatusConflict, msg: "this level is already published", err: err}
		}
		return &webError{code: http.StatusBadRequest, msg: "bundle refused: " + trimLines(err.Error()), err: err}
	}
	obj := fmt.Sprintf("%s/%d", l.BuildID, l.Level)
	u.audit(r, c, "level.publish", obj, fmt.Sprintf("release=%s patchset=%s channel=%s digest=%s", l.Release, l.Patchset, l.Channel, l.Digest),
		nil, map[string]any{"build_id": l.BuildID, "release": l.Release, "level": l.Level, "patchset": l.Patchset,
			"channel": l.Channel, "digest": l.Digest, "released": l.Released, "cves": len(l.CVEs)})
	return redirect(w, r, "/admin/patches?published="+url.QueryEscape(l.Release+" level "+strconv.Itoa(l.Level)))
}

// Users and API keys.

func (u *UI) users(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	users, err := u.cfg.Store.Users(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "users", "Users", map[string]any{"Users": users})
	return nil
}

func (u *UI) addUser(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	name, role := strings.TrimSpace(r.PostFormValue("name")), apitype.Role(r.PostFormValue("role"))
	release, err := u.hashes.Acquire(r.Context(), u.cfg.HashWait)
	if err != nil {
		return tooMany(time.Second, "the portal is busy checking sign-ins")
	}
	hash, err := auth.HashPassword(r.PostFormValue("password"))
	release()
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	usr := &store.User{Name: name, PasswordHash: hash, Role: role, Created: u.now()}
	if err := u.cfg.Store.AddUser(r.Context(), usr); err != nil {
		return storeError(err)
	}
	u.audit(r, c, "user.add", name, "role="+string(role), nil, map[string]any{"name": name, "role": role})
	return redirect(w, r, "/admin/users")
}

func (u *UI) deleteUser(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	name := r.PathValue("name")
	if name == c.user.Name {
		return errorf(http.StatusBadRequest, "you cannot delete yourself")
	}
	before, err := u.cfg.Store.User(r.Context(), name)
	if err != nil {
		return storeError(err)
	}
	if err := u.cfg.Store.DeleteUser(r.Context(), name); err != nil {
		return storeError(err)
	}
	u.audit(r, c, "user.delete", name, "", map[string]any{"name": name, "role": before.Role}, nil)
	return redirect(w, r, "/admin/users")
}

func (u *UI) apiKeys(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	toks, err := u.cfg.Store.Tokens(r.Context(), "")
	if err != nil {
		return err
	}
	users, err := u.cfg.Store.Users(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "apikeys", "API keys", map[string]any{"Tokens": toks, "Users": users})
	return nil
}

func (u *UI) addAPIKey(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	user, note := r.PostFormValue("user"), r.PostFormValue("note")
	if user == "" {
		user = c.user.Name
	}
	secret := auth.NewSecret()
	t := &store.Token{Hash: auth.HashSecret(secret), User: user, Note: note, Created: u.now()}
	if err := u.cfg.Store.AddToken(r.Context(), t); err != nil {
		return storeError(err)
	}
	u.audit(r, c, "token.add", strconv.FormatInt(t.ID, 10), "user="+user, nil, map[string]any{"id": t.ID, "user": user, "note": note})
	// Shown once: only its hash is kept.
	u.render(w, r, c, http.StatusOK, "apikey", "New API key", map[string]any{"T": t, "Secret": secret})
	return nil
}

func (u *UI) deleteAPIKey(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return errorf(http.StatusNotFound, "no such API key")
	}
	var before *store.Token
	toks, err := u.cfg.Store.Tokens(r.Context(), "")
	if err != nil {
		return err
	}
	for i := range toks {
		if toks[i].ID == id {
			before = &toks[i]
		}
	}
	if before == nil {
		return errorf(http.StatusNotFound, "no such API key")
	}
	if err := u.cfg.Store.DeleteToken(r.Context(), id); err != nil {
		return storeError(err)
	}
	u.audit(r, c, "token.delete", strconv.FormatInt(id, 10), "user="+before.User, map[string]any{"id": id, "user": before.User, "note": before.Note}, nil)
	return redirect(w, r, "/admin/apikeys")
}

// Audit log.

const auditPageSize = 100

func (u *UI) auditLog(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	q := r.URL.Query()
	f := store.AuditFilter{Actor: q.Get("user"), Object: q.Get("object"), Action: q.Get("action"), Limit: auditPageSize + 1}
	day := func(name string) (time.Time, error) {
		v := q.Get(name)
		if v == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse("2006-01-02", v)
		if err != nil {
			return t, errorf(http.StatusBadRequest, "%s: a date as YYYY-MM-DD", name)
		}
		return t, nil
	}
	var err error
	if f.From, err = day("from"); err != nil {
		return err
	}
	if f.To, err = day("to"); err != nil {
		return err
	}
	if !f.To.IsZero() {
		f.To = f.To.Add(24 * time.Hour) // to the end of that day
	}
	if v := q.Get("before"); v != "" {
		if f.BeforeID, err = strconv.ParseInt(v, 10, 64); err != nil {
			return errorf(http.StatusBadRequest, "before: an entry id")
		}
	}
	list, err := u.cfg.Store.AuditQuery(r.Context(), f)
	if err != nil {
		return err
	}
	older := ""
	if len(list) > auditPageSize {
		list = list[:auditPageSize]
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("before", strconv.FormatInt(list[len(list)-1].ID, 10))
		older = nq.Encode()
	}
	users, err := u.cfg.Store.Users(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "audit", "Audit log", map[string]any{"Entries": list, "Older": older, "Q": q, "Users": users})
	return nil
}
