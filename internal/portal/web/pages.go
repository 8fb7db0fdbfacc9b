package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/fleet"
	"github.com/kcare/kcare/internal/portal/httperr"
	"github.com/kcare/kcare/internal/portal/store"
)

// Overview.

type overview struct {
	Stats              store.FleetStats
	Kernels, Effective []store.Count
	At                 time.Time     // when counted, on the portal's clock
	Took               time.Duration // how long counting took
	Kept               time.Duration // how long the counts are shown again: 0, or statsTTL
}

// The overview's counts scan the whole servers table. A view that starts
// a count waits up to statsSlow for it; a fleet counted in that time is
// counted again on every view, so that a server just registered shows at
// once. A count that takes longer (a large fleet) goes on in the
// background: the view, and every view while it runs, shows the counts
// before it, or says that the fleet is being counted; and a count that
// took statsSlow or more is shown again for statsTTL before a view starts
// the next. So no view waits longer than statsSlow for its counts.
const (
	statsSlow  = 50 * time.Millisecond
	statsTTL   = 30 * time.Second
	statsBound = 5 * time.Minute // bounds one count
)

// overviewPage is what the overview shows: the last counts (nil before
// the first), and when the count under way, if any, started.
type overviewPage struct {
	Counts   *overview
	Counting time.Time
	// Coverage is the chart of the fleet's coverage by day (the rollout
	// loop's counts), drawn at every view.
	Coverage template.HTML
}

func (u *UI) overview(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	now := u.now()
	u.statsMu.Lock()
	o := u.stats
	fresh := o != nil && o.Kept > 0 && !now.Before(o.At) && now.Sub(o.At) <= o.Kept
	started := !fresh && u.counting == nil
	if started {
		u.counting = make(chan struct{})
		u.countingSince = now
		go u.count(u.counting, time.Now())
	}
	done := u.counting
	u.statsMu.Unlock()
	if started {
		t := time.NewTimer(statsSlow)
		select {
		case <-done:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	u.statsMu.Lock()
	page := overviewPage{Counts: u.stats}
	if u.counting != nil {
		page.Counting = u.countingSince
	}
	err := u.statsErr
	u.statsMu.Unlock()
	if page.Counts == nil && err != nil {
		return err
	}
	days, err := u.core.Coverage(r.Context(), coverageMaxDays)
	if err != nil {
		return err
	}
	page.Coverage = CoverageChart(days, now, coverageMaxDays)
	u.render(w, r, c, http.StatusOK, "overview", "Overview", page)
	return nil
}

// count counts the fleet for the overview and closes done. start is
// when the view that asked for it began to wait: how long the count took
// is measured from there, as the view saw it.
func (u *UI) count(done chan struct{}, start time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), statsBound)
	defer cancel()
	at := u.now()
	o, err := func() (*overview, error) {
		st, err := u.core.Stats(ctx)
		if err != nil {
			return nil, err
		}
		k, e, err := u.core.TopKernels(ctx, 10)
		if err != nil {
			return nil, err
		}
		return &overview{Stats: st, Kernels: k, Effective: e, At: at, Took: time.Since(start).Round(time.Millisecond)}, nil
	}()
	u.statsMu.Lock()
	defer u.statsMu.Unlock()
	if err != nil {
		u.cfg.Log.Error("overview: count the fleet", "error", err)
	} else {
		if o.Took >= statsSlow {
			o.Kept = statsTTL
		}
		u.stats = o
	}
	u.statsErr = err
	u.counting = nil
	close(done)
}

// Servers.

type serverRow struct {
	fleet.Classified
	Marker bool   // has not the newest level it is allowed
	Feed   string // its key's feed, or its IP license's
}

// serverList reads one page of servers by the query q and classifies it.
// keys are the activation keys (KeyList), for the rows' feeds. A page
// after a cursor (after, after_id) or before one (before, before_id)
// links to the pages on either side.
func (u *UI) serverList(ctx context.Context, q url.Values, f store.ServerFilter, keys []store.Key) (*serverPage, error) {
	if err := u.core.StateFilter(&f, apitype.ServerState(q.Get("state"))); err != nil {
		return nil, errorf(http.StatusBadRequest, "state: one of uptodate, outofdate, unsupported, inactive")
	}
	f.Sort = q.Get("sort")
	if f.Sort != "" && !slices.Contains(store.SortColumns, f.Sort) {
		return nil, errorf(http.StatusBadRequest, "sort: one of %s", strings.Join(store.SortColumns, ", "))
	}
	f.Desc = q.Get("desc") == "1"
	backward := false
	switch {
	case q.Get("after_id") != "":
		f.After = &store.Cursor{Value: q.Get("after"), ID: q.Get("after_id")}
	case q.Get("before_id") != "":
		f.Before, backward = &store.Cursor{Value: q.Get("before"), ID: q.Get("before_id")}, true
	}
	f.Limit = PageSize + 1
	list, err := u.core.Servers(ctx, f)
	if err != nil {
		return nil, err
	}
	more := len(list) > PageSize
	if more {
		if backward {
			list = list[len(list)-PageSize:] // the rows nearest the cursor
		} else {
			list = list[:PageSize]
		}
	}
	p := &serverPage{}
	link := func(dir string, at store.Server) string {
		c := store.CursorOf(at, f.Sort)
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		for _, k := range []string{"after", "after_id", "before", "before_id"} {
			nq.Del(k)
		}
		nq.Set(dir, c.Value)
		nq.Set(dir+"_id", c.ID)
		return nq.Encode()
	}
	if len(list) > 0 {
		if more || backward {
			p.Next = link("after", list[len(list)-1])
		}
		if (more && backward) || f.After != nil {
			p.Prev = link("before", list[0])
		}
	}
	cs, err := u.core.Classify(ctx, list)
	if err != nil {
		return nil, err
	}
	feedOf := map[string]string{}
	for _, k := range keys {
		feedOf[k.Key] = k.Feed
	}
	p.Rows = make([]serverRow, len(cs))
	for i, c := range cs {
		feed := c.LicenseFeed
		if c.Key != "" {
			feed = feedOf[c.Key]
		}
		p.Rows[i] = serverRow{Classified: c, Marker: c.Allowed > c.Level, Feed: feed}
	}
	return p, nil
}

// serverPage is one page of the servers list, with the queries of the
// pages before and after it ("" for none).
type serverPage struct {
	Rows       []serverRow
	Prev, Next string
}

func (u *UI) servers(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	q := r.URL.Query()
	keys, err := u.core.KeyList(r.Context())
	if err != nil {
		return err
	}
	f := store.ServerFilter{Key: q.Get("key"), Feed: q.Get("feed"), Tag: q.Get("tag"), Search: q.Get("q")}
	page, err := u.serverList(r.Context(), q, f, keys)
	if err != nil {
		return err
	}
	feeds, err := u.core.Feeds(r.Context())
	if err != nil {
		return err
	}
	sortLink := func(col string) string {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		for _, k := range []string{"after", "after_id", "before", "before_id"} {
			nq.Del(k)
		}
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
	for _, k := range []string{"after", "after_id", "before", "before_id"} {
		first.Del(k)
	}
	u.render(w, r, c, http.StatusOK, "servers", "Servers", map[string]any{
		"Rows": page.Rows, "Next": page.Next, "Prev": page.Prev, "First": first.Encode(), "Paged": page.Prev != "",
		"Q": q, "Keys": keys, "Feeds": feeds, "States": apitype.ServerStates,
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
		if err := u.core.DeleteServer(r.Context(), c.actor(r), id); err != nil {
			return err
		}
	}
	return redirect(w, r, safeNext(r.PostForm.Get("back"), "/admin/servers"))
}

func (u *UI) server(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	ctx := r.Context()
	v, err := u.core.Server(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	cs, err := u.core.Classify(ctx, []store.Server{*v})
	if err != nil {
		return err
	}
	cves, err := u.core.FixedCVEs(ctx, v)
	if err != nil {
		return err
	}
	hist, err := u.core.CheckinHistory(ctx, v.ID, 50)
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "server", "Server "+v.ID, map[string]any{
		"S": cs[0], "Marker": cs[0].Allowed > v.Level, "CVEs": cves, "History": hist})
	return nil
}

// Keys.

func (u *UI) keys(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	keys, err := u.core.Keys(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "keys", "Keys", map[string]any{"Keys": keys})
	return nil
}

func (u *UI) key(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	k, err := u.core.Key(r.Context(), r.PathValue("key"))
	if err != nil {
		return err
	}
	page, err := u.serverList(r.Context(), r.URL.Query(), store.ServerFilter{Key: k.Key}, []store.Key{*k})
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "key", "Key "+k.Key, map[string]any{"K": k, "Rows": page.Rows, "Next": page.Next, "Prev": page.Prev})
	return nil
}

func (u *UI) keyForm(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	k := &store.Key{Feed: apitype.MainFeed}
	if name := r.PathValue("key"); name != "" {
		var err error
		if k, err = u.core.Key(r.Context(), name); err != nil {
			return err
		}
	}
	feeds, err := u.core.Feeds(r.Context())
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
	set := func(k *store.Key) {
		k.Note, k.Limit, k.Feed = f.Get("note"), limit, f.Get("feed")
		k.Sticky, k.IPRanges = strings.TrimSpace(f.Get("sticky")), splitList(f.Get("ip_ranges"))
	}
	if name := r.PathValue("key"); name != "" {
		if _, err := u.core.EditKey(ctx, c.actor(r), name, set); err != nil {
			return err
		}
		return redirect(w, r, "/admin/keys/"+url.PathEscape(name))
	}
	k := &store.Key{Key: strings.TrimSpace(f.Get("key"))}
	set(k)
	if err := u.core.AddKey(ctx, c.actor(r), k); err != nil {
		return err
	}
	return redirect(w, r, "/admin/keys/"+url.PathEscape(k.Key))
}

func (u *UI) confirmDeleteKey(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	k, err := u.core.Key(r.Context(), r.PathValue("key"))
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "confirm", "Delete key "+k.Key, map[string]any{
		"What":   fmt.Sprintf("Delete key %s? Its %d registered servers are unregistered.", k.Key, k.Servers),
		"Action": "/admin/keys/" + url.PathEscape(k.Key) + "/delete", "Back": "/admin/keys/" + url.PathEscape(k.Key)})
	return nil
}

func (u *UI) deleteKey(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	if err := u.core.DeleteKey(r.Context(), c.actor(r), r.PathValue("key")); err != nil {
		return err
	}
	return redirect(w, r, "/admin/keys")
}

// Feeds.

func (u *UI) feeds(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	feeds, err := u.core.Feeds(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "feeds", "Feeds", map[string]any{"Feeds": feeds})
	return nil
}

// feedForm reads a feed's settings from its form into f.
func feedForm(form url.Values, f *store.Feed) error {
	hours := 0
	if v := strings.TrimSpace(form.Get("deploy_after")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "deploy after: whole hours")
		}
		hours = n
	}
	f.Channel = apitype.Channel(form.Get("channel"))
	if f.Channel == "" {
		f.Channel = apitype.ChannelStable
	}
	f.DeployAfter, f.Auto = time.Duration(hours)*time.Hour, form.Get("auto") != ""
	return nil
}

func (u *UI) addFeed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	f := &store.Feed{Name: strings.TrimSpace(r.PostFormValue("name"))}
	if err := feedForm(r.PostForm, f); err != nil {
		return err
	}
	if err := u.core.AddFeed(r.Context(), c.actor(r), f); err != nil {
		return err
	}
	return redirect(w, r, "/admin/feeds/"+url.PathEscape(f.Name))
}

func (u *UI) editFeed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	name := r.PathValue("feed")
	var formErr error
	_, err := u.core.EditFeed(r.Context(), c.actor(r), name, func(f *store.Feed) { formErr = feedForm(r.PostForm, f) })
	if formErr != nil {
		return formErr
	}
	if err != nil {
		return err
	}
	return redirect(w, r, "/admin/feeds/"+url.PathEscape(name))
}

func (u *UI) confirmDeleteFeed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	f, err := u.core.Feed(r.Context(), r.PathValue("feed"))
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "confirm", "Delete feed "+f.Name, map[string]any{
		"What":   fmt.Sprintf("Delete feed %s? Its keys and IP licenses move to main.", f.Name),
		"Action": "/admin/feeds/" + url.PathEscape(f.Name) + "/delete", "Back": "/admin/feeds/" + url.PathEscape(f.Name)})
	return nil
}

func (u *UI) deleteFeed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	if err := u.core.DeleteFeed(r.Context(), c.actor(r), r.PathValue("feed")); err != nil {
		return err
	}
	return redirect(w, r, "/admin/feeds")
}

func (u *UI) feed(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	f, err := u.core.Feed(r.Context(), r.PathValue("feed"))
	if err != nil {
		return err
	}
	kl, err := u.core.Kernels(r.Context(), f)
	if err != nil {
		return err
	}
	pol, err := u.core.RolloutPolicy(r.Context(), f.Name)
	if err != nil {
		return err
	}
	rs, err := u.feedRollouts(r.Context(), f.Name)
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "feed", "Feed "+f.Name, map[string]any{"F": f, "Hours": int(f.DeployAfter / time.Hour), "Kernels": kl,
		"Policy": pol, "Rollouts": rs})
	return nil
}

func (u *UI) managePatchsets(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	feed := r.PathValue("feed")
	_, err := u.core.ManagePatchsets(r.Context(), c.actor(r), feed, r.PostFormValue("patchset"), apitype.PatchsetAction(r.PostFormValue("action")))
	if err != nil {
		return err
	}
	return redirect(w, r, "/admin/feeds/"+url.PathEscape(feed))
}

// Patches.

func (u *UI) patches(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	kl, err := u.core.Kernels(r.Context(), nil)
	if err != nil {
		return err
	}
	keys, err := u.core.PublisherKeys(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "patches", "Patches", map[string]any{"Kernels": kl, "Published": r.URL.Query().Get("published"), "Publishers": keys})
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
	o := core.PublishOptions{Channel: apitype.Channel(c.upload["channel"]), Patchset: strings.TrimSpace(string(c.upload["patchset"]))}
	l, err := u.core.Publish(r.Context(), c.actor(r), data, sig, o)
	switch {
	case errors.Is(err, core.ErrNoPublisherKeys), store.Full(err), store.Unavailable(err):
		return err
	case errors.Is(err, store.ErrExists):
		return httperr.Wrap(http.StatusConflict, "this level is already published", err)
	case err != nil:
		return httperr.Wrap(http.StatusBadRequest, "bundle refused: "+trimLines(err.Error()), err)
	}
	return redirect(w, r, "/admin/patches?published="+url.QueryEscape(l.Release+" level "+strconv.Itoa(l.Level)))
}

// Users and API keys.

func (u *UI) users(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	users, err := u.core.Users(r.Context())
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
		return httperr.TooMany(time.Second, "the portal is busy checking sign-ins")
	}
	hash, err := auth.HashPassword(r.PostFormValue("password"))
	release()
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err := u.core.AddUser(r.Context(), c.actor(r), name, hash, role); err != nil {
		return err
	}
	return redirect(w, r, "/admin/users")
}

func (u *UI) deleteUser(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	if err := u.core.DeleteUser(r.Context(), c.actor(r), r.PathValue("name")); err != nil {
		return err
	}
	return redirect(w, r, "/admin/users")
}

func (u *UI) apiKeys(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	toks, err := u.core.Tokens(r.Context(), "")
	if err != nil {
		return err
	}
	users, err := u.core.Users(r.Context())
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
	t, secret, err := u.core.AddToken(r.Context(), c.actor(r), user, note)
	if err != nil {
		return err
	}
	// Shown once: only its hash is kept.
	u.render(w, r, c, http.StatusOK, "apikey", "New API key", map[string]any{"T": t, "Secret": secret})
	return nil
}

func (u *UI) deleteAPIKey(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return errorf(http.StatusNotFound, "no such API key")
	}
	err = u.core.DeleteToken(r.Context(), c.actor(r), id)
	if errors.Is(err, store.ErrNotFound) {
		return httperr.Wrap(http.StatusNotFound, "no such API key", err)
	}
	if err != nil {
		return err
	}
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
	list, err := u.core.AuditLog(r.Context(), f)
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
	users, err := u.core.Users(r.Context())
	if err != nil {
		return err
	}
	u.render(w, r, c, http.StatusOK, "audit", "Audit log", map[string]any{"Entries": list, "Older": older, "Q": q, "Users": users})
	return nil
}
