package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/httperr"
	"github.com/kcare/kcare/internal/portal/store"
)

// ePortal's REST API under /admin/api, as TuxCare documents it: each
// handler reads its parameters (the query string, a form or a JSON
// object, as ePortal takes them; a parameter it does not know is a 400,
// never ignored), calls the core, and answers the core's objects as
// apitype's.

// operator is the actor of a REST request: its API token's user.
func operator(r *http.Request) core.Actor { return core.Operator(userOf(r), httperr.RemoteIP(r)) }

// params is a request's parameters: its query string, and its body as
// ePortal takes one (bodyValues). A parameter not in allowed is refused,
// never ignored.
func params(r *http.Request, allowed ...string) (url.Values, error) {
	v, err := parseValues(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "query: %v", err)
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		b, err := bodyValues(r)
		if err != nil {
			return nil, err
		}
		for k, vs := range b {
			v[k] = append(v[k], vs...)
		}
	}
	var unknown []string
	for k := range v {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		if len(allowed) == 0 {
			return nil, errorf(http.StatusBadRequest, "unknown parameter %s: this route takes none", strings.Join(unknown, ", "))
		}
		return nil, errorf(http.StatusBadRequest, "unknown parameter %s (this route takes %s)", strings.Join(unknown, ", "), strings.Join(allowed, ", "))
	}
	return v, nil
}

// parseValues parses a query string or a urlencoded form as ePortal's
// clients write them: pairs separated by "&" only, so that a ";" is part
// of a value (tags=env:test;stage), where url.ParseQuery would drop the
// pair.
func parseValues(raw string) (url.Values, error) {
	v := url.Values{}
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, val, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return nil, err
		}
		if val, err = url.QueryUnescape(val); err != nil {
			return nil, err
		}
		v[k] = append(v[k], val)
	}
	return v, nil
}

// bodyValues is a request body as ePortal takes one: a urlencoded or
// multipart form, or a JSON object whose values are strings, numbers,
// booleans, null or lists of strings. A body with no type is JSON when it
// starts with "{", else a urlencoded form. It reads at most the route's
// body limit.
func bodyValues(r *http.Request) (url.Values, error) {
	v := url.Values{}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return v, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	br := bufio.NewReader(r.Body)
	first, err := br.Peek(1)
	r.Body = struct {
		io.Reader
		io.Closer
	}{br, r.Body}
	switch {
	case err == io.EOF:
		return v, nil // an empty body
	case err != nil:
		return nil, err // a body over the route's limit: 413
	case ct == "" && first[0] == '{':
		ct = "application/json"
	case ct == "":
		ct = "application/x-www-form-urlencoded"
	}
	switch ct {
	case "application/json":
		var obj map[string]json.RawMessage
		dec := json.NewDecoder(r.Body) // bounded by the route's body limit
		if err := dec.Decode(&obj); err != nil {
			return nil, httperr.Wrap(http.StatusBadRequest, "bad JSON body: "+err.Error(), err)
		}
		if dec.More() {
			return nil, errorf(http.StatusBadRequest, "bad JSON body: one object, nothing after it")
		}
		for k, raw := range obj {
			vs, err := jsonParam(raw)
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "%s: %v", k, err)
			}
			v[k] = append(v[k], vs...)
		}
	case "application/x-www-form-urlencoded":
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		if v, err = parseValues(string(b)); err != nil {
			return nil, httperr.Wrap(http.StatusBadRequest, "bad form body", err)
		}
	case "multipart/form-data":
		if err := r.ParseMultipartForm(restBodyMax); err != nil {
			return nil, httperr.Wrap(http.StatusBadRequest, "bad form body", err)
		}
		for k, vs := range r.MultipartForm.Value {
			v[k] = append(v[k], vs...)
		}
		if len(r.MultipartForm.File) > 0 {
			r.MultipartForm.RemoveAll()
			return nil, errorf(http.StatusBadRequest, "a file in the form: this route takes text fields")
		}
	default:
		return nil, errorf(http.StatusUnsupportedMediaType, "body: want application/json, a urlencoded or a multipart form")
	}
	return v, nil
}

// jsonParam is a JSON value as a parameter's values.
func jsonParam(raw json.RawMessage) ([]string, error) {
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return nil, err
	}
	switch x := x.(type) {
	case nil:
		return []string{""}, nil
	case string:
		return []string{x}, nil
	case bool:
		return []string{strconv.FormatBool(x)}, nil
	case float64:
		return []string{string(raw)}, nil
	case []any:
		out := []string{}
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, errors.New("want a list of strings")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, errors.New("want a string, number, boolean or list of strings")
}

// has reports whether v names k.
func has(v url.Values, k string) bool { _, ok := v[k]; return ok }

// boolParam reads an ePortal boolean: true/false, 1/0, yes/no, on/off.
func boolParam(name, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off", "":
		return false, nil
	}
	return false, errorf(http.StatusBadRequest, "%s: want true or false", name)
}

// ageParam reads ePortal's age filters (registered_age, checkin_age):
// whole days, or hours with an h suffix; a positive age selects what is
// older, a negative one what is as young or younger.
func ageParam(name, v string) (older, within time.Duration, err error) {
	unit := 24 * time.Hour
	num := v
	if n, ok := strings.CutSuffix(v, "h"); ok {
		unit, num = time.Hour, n
	}
	n, e := strconv.Atoi(num)
	if e != nil || n == 0 || n > 100000 || n < -100000 {
		return 0, 0, errorf(http.StatusBadRequest, "%s: want whole days (3), hours (4h), or a negative age (-3) for as young or younger", name)
	}
	if n > 0 {
		return time.Duration(n) * unit, 0, nil
	}
	return 0, time.Duration(-n) * unit, nil
}

// The server listing's filters, as ePortal documents them.
var serverFilters = []string{"hostname", "ip", "service_id", "feed", "key", "registered_age", "checkin_age",
	"updated_age", "is_updated", "limit", "offset", "only_count", "tag"}

// serverFilter reads the server listing's filters.
func serverFilter(q url.Values) (store.ServerFilter, bool, error) {
	f := store.ServerFilter{HostnameLike: q.Get("hostname"), IPLike: q.Get("ip"), Key: q.Get("key"), Feed: q.Get("feed"), Tag: q.Get("tag")}
	var err error
	if has(q, "service_id") {
		return f, false, errorf(http.StatusBadRequest, "service_id: not supported by kcare: servers have no service id, filter by hostname, ip or key")
	}
	if v := q.Get("registered_age"); v != "" {
		if f.RegisteredAge, f.RegisteredWithin, err = ageParam("registered_age", v); err != nil {
			return f, false, err
		}
	}
	if v := q.Get("updated_age"); v != "" {
		if f.UpdatedAge, f.UpdatedWithin, err = ageParam("updated_age", v); err != nil {
			return f, false, err
		}
	}
	if v := q.Get("checkin_age"); v != "" {
		if f.CheckinAge, f.ActiveWithin, err = ageParam("checkin_age", v); err != nil {
			return f, false, err
		}
	}
	if v := q.Get("is_updated"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, false, errorf(http.StatusBadRequest, "is_updated: true or false")
		}
		f.IsUpdated = &b
	}
	if f.Limit, err = intParam(q.Get("limit"), apitype.DefaultLimit); err != nil {
		return f, false, errorf(http.StatusBadRequest, "limit: %v", err)
	}
	if f.Limit == 0 || f.Limit > apitype.MaxLimit {
		return f, false, errorf(http.StatusBadRequest, "limit: from 1 to %d", apitype.MaxLimit)
	}
	if f.Offset, err = intParam(q.Get("offset"), 0); err != nil {
		return f, false, errorf(http.StatusBadRequest, "offset: %v", err)
	}
	onlyCount, err := boolParam("only_count", q.Get("only_count"))
	return f, onlyCount, err
}

// restServers is ePortal's GET /admin/api/servers.
func (s *Server) restServers(w http.ResponseWriter, r *http.Request) error {
	q, err := params(r, serverFilters...)
	if err != nil {
		return err
	}
	f, onlyCount, err := serverFilter(q)
	if err != nil {
		return err
	}
	count, err := s.core.CountServers(r.Context(), f)
	if err != nil {
		return err
	}
	if onlyCount {
		return writeJSON(w, http.StatusOK, apitype.Count{Count: count})
	}
	list, err := s.core.Servers(r.Context(), f)
	if err != nil {
		return err
	}
	feeds, err := s.keyFeeds(r)
	if err != nil {
		return err
	}
	out := make([]apitype.Server, len(list))
	for i, srv := range list {
		out[i] = serverJSON(srv, feeds)
		out[i].Key = keyFor(r, srv.Key)
	}
	return writeJSON(w, http.StatusOK, apitype.Page[apitype.Server]{Count: count, Limit: f.Limit, Offset: f.Offset, Result: out})
}

// keyFeeds maps each key to its feed.
func (s *Server) keyFeeds(r *http.Request) (map[string]string, error) {
	keys, err := s.core.KeyList(r.Context())
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k.Key] = k.Feed
	}
	return m, nil
}

func serverJSON(s store.Server, feeds map[string]string) apitype.Server {
	out := apitype.Server{
		ID: s.ID, IP: s.IP, Hostname: s.Hostname, Key: s.Key, Feed: feeds[s.Key],
		Registered: apitype.TimeOf(s.Registered), Checkin: apitype.TimeOf(s.LastCheckin), Updated: apitype.TimeOf(s.Updated),
		EUname: s.EffectiveRelease, Release: s.Release, KernelID: s.KernelID, PatchLevel: s.Level,
		PatchType: apitype.PatchTypeDefault, KcareVersion: s.AgentVersion, BuildID: s.BuildID, LastResult: s.LastResult,
	}
	if s.Key == "" {
		out.Feed = s.LicenseFeed
	}
	if out.Feed == "" {
		out.Feed = apitype.MainFeed
	}
	if s.Tags != "" {
		t := s.Tags
		out.Tags = &t
	}
	return out
}

// keyFor is an activation key as the caller may see it: whole for an
// admin, masked (store.MaskKey) for a read-only operator, who can read the
// fleet but must not be able to register servers with its keys.
func keyFor(r *http.Request, key string) string {
	if a := authnOf(r); a != nil && a.user != nil && a.user.Role == apitype.RoleAdmin {
		return key
	}
	return store.MaskKey(key)
}

func intParam(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errors.New("a whole number 0 or more")
	}
	return n, nil
}

// restDeleteServer is ePortal's POST /admin/api/delete_server: it deletes
// the servers with a hostname, an IP or an id (at least one; all given
// must match) and answers how many.
func (s *Server) restDeleteServer(w http.ResponseWriter, r *http.Request) error {
	q, err := params(r, "hostname", "ip", "server_id")
	if err != nil {
		return err
	}
	host, ip, id := q.Get("hostname"), q.Get("ip"), q.Get("server_id")
	if host == "" && ip == "" && id == "" {
		return errorf(http.StatusBadRequest, "name the servers to delete: hostname, ip or server_id")
	}
	f := store.ServerFilter{IP: ip}
	if host != "" {
		f.HostnameLike = strings.NewReplacer("%", "").Replace(host) // the whole name, no pattern
	}
	if id != "" {
		srv, err := s.core.Server(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && ((ip != "" && srv.IP != ip) || (host != "" && !strings.EqualFold(srv.Hostname, host)))) {
			return writeJSON(w, http.StatusOK, apitype.ResultOf(0))
		}
		if err != nil {
			return err
		}
		if err := s.core.DeleteServer(r.Context(), operator(r), id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return writeJSON(w, http.StatusOK, apitype.ResultOf(1))
	}
	n, err := s.core.DeleteServers(r.Context(), operator(r), f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.ResultOf(n))
}

// restCleanServers is ePortal's DELETE /admin/api/servers?checkin_age=N:
// it deletes the servers whose last check-in is older than N days.
func (s *Server) restCleanServers(w http.ResponseWriter, r *http.Request) error {
	q, err := params(r, "checkin_age")
	if err != nil {
		return err
	}
	days, err := strconv.Atoi(q.Get("checkin_age"))
	if err != nil || days < 1 || days > 100000 {
		return errorf(http.StatusBadRequest, "checkin_age: required, whole days, 1 or more")
	}
	n, err := s.core.CleanServers(r.Context(), operator(r), time.Duration(days)*24*time.Hour)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.ResultOf(n))
}

// restSetTags is ePortal's POST /admin/api/set_tags: a server's tags,
// separated by ";"; without tags, none.
func (s *Server) restSetTags(w http.ResponseWriter, r *http.Request) error {
	q, err := params(r, "server_id", "tags")
	if err != nil {
		return err
	}
	id := q.Get("server_id")
	if id == "" {
		return errorf(http.StatusBadRequest, "server_id: required")
	}
	if err := s.core.SetServerTags(r.Context(), operator(r), id, q.Get("tags")); err != nil {
		if errors.Is(err, apitype.ErrBadField) {
			return errorf(http.StatusBadRequest, "tags: up to %d bytes of text without control characters or quotes", apitype.MaxTagsLen)
		}
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.OK)
}

func (s *Server) restKeys(w http.ResponseWriter, r *http.Request) error {
	if _, err := params(r); err != nil {
		return err
	}
	keys, err := s.core.Keys(r.Context())
	if err != nil {
		return err
	}
	out := make([]apitype.Key, len(keys))
	for i, k := range keys {
		out[i] = keyJSON(&k)
		out[i].Key = keyFor(r, k.Key)
	}
	return writeJSON(w, http.StatusOK, apitype.ListOf(out))
}

func keyJSON(k *store.Key) apitype.Key {
	out := apitype.Key{Key: k.Key, Feed: k.Feed, Limit: k.Limit, Sticky: k.Sticky, IPRanges: k.IPRanges, Servers: k.Servers, Created: apitype.TimeOf(k.Created)}
	if k.Note != "" {
		n := k.Note
		out.Note = &n
	}
	if out.IPRanges == nil {
		out.IPRanges = []string{}
	}
	return out
}

// restPutKey is ePortal's POST /admin/api/keys/: it adds the key, or
// changes the one that exists (the parameters given; the others stay).
// A key not given is a random one.
func (s *Server) restPutKey(w http.ResponseWriter, r *http.Request) error {
	q, err := params(r, "key", "feed", "note", "server_limit", "sticky_patch", "ip_ranges")
	if err != nil {
		return err
	}
	limit := 0
	if has(q, "server_limit") {
		if limit, err = intParam(q.Get("server_limit"), 0); err != nil {
			return errorf(http.StatusBadRequest, "server_limit: %v", err)
		}
	}
	set := func(k *store.Key) {
		if has(q, "feed") {
			k.Feed = q.Get("feed")
		}
		if has(q, "note") {
			k.Note = q.Get("note")
		}
		if has(q, "server_limit") {
			k.Limit = limit
		}
		if has(q, "sticky_patch") {
			k.Sticky = q.Get("sticky_patch")
		}
		if has(q, "ip_ranges") {
			k.IPRanges = slices.DeleteFunc(slices.Clone(q["ip_ranges"]), func(s string) bool { return s == "" })
		}
	}
	name := q.Get("key")
	k := &store.Key{Key: name}
	code := http.StatusOK
	if exists, err := s.core.KeyExists(r.Context(), name); err != nil {
		return err
	} else if name != "" && exists {
		if k, err = s.core.EditKey(r.Context(), operator(r), name, set); err != nil {
			return err
		}
	} else {
		set(k)
		if err := s.core.AddKey(r.Context(), operator(r), k); err != nil {
			return err
		}
		code = http.StatusCreated
	}
	k, err = s.core.Key(r.Context(), k.Key)
	if err != nil {
		return err
	}
	return writeJSON(w, code, apitype.ResultOf(keyJSON(k)))
}

// restDeleteKey is ePortal's DELETE /admin/api/keys/{key}: how many keys
// it deleted, 0 when there is none.
func (s *Server) restDeleteKey(w http.ResponseWriter, r *http.Request) error {
	if _, err := params(r); err != nil {
		return err
	}
	err := s.core.DeleteKey(r.Context(), operator(r), r.PathValue("key"))
	if errors.Is(err, store.ErrNotFound) {
		return writeJSON(w, http.StatusOK, apitype.ResultOf(0))
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.ResultOf(1))
}

func feedJSON(f *store.Feed) apitype.Feed {
	return apitype.Feed{Name: f.Name, Auto: f.Auto, DeployAfterHours: int(f.DeployAfter / time.Hour), Channel: apitype.FeedChannelOf(f.Channel)}
}

func (s *Server) restFeeds(w http.ResponseWriter, r *http.Request) error {
	if _, err := params(r); err != nil {
		return err
	}
	feeds, err := s.core.Feeds(r.Context())
	if err != nil {
		return err
	}
	out := make([]apitype.Feed, len(feeds))
	for i, f := range feeds {
		out[i] = feedJSON(&f)
	}
	return writeJSON(w, http.StatusOK, apitype.ListOf(out))
}

// restPutFeed is ePortal's POST /admin/api/feeds/: it adds the feed, or
// changes the one that exists (the parameters given; the others stay).
func (s *Server) restPutFeed(w http.ResponseWriter, r *http.Request) error {
	q, err := params(r, "name", "auto", "deploy_after", "channel")
	if err != nil {
		return err
	}
	name := q.Get("name")
	if name == "" {
		return errorf(http.StatusBadRequest, "name: required")
	}
	var auto bool
	var hours int
	var ch apitype.Channel
	if auto, err = boolParam("auto", q.Get("auto")); err != nil {
		return err
	}
	if hours, err = intParam(q.Get("deploy_after"), 0); err != nil {
		return errorf(http.StatusBadRequest, "deploy_after: hours, %v", err)
	}
	if ch, err = apitype.ParseFeedChannel(q.Get("channel")); err != nil {
		return httperr.Wrap(http.StatusBadRequest, err.Error(), err)
	}
	set := func(f *store.Feed) {
		if has(q, "auto") {
			f.Auto = auto
		}
		if has(q, "deploy_after") {
			f.DeployAfter = time.Duration(hours) * time.Hour
		}
		if has(q, "channel") {
			f.Channel = ch
		}
	}
	_, err = s.core.Feed(r.Context(), name)
	code := http.StatusOK
	var f *store.Feed
	switch {
	case errors.Is(err, store.ErrNotFound):
		f = &store.Feed{Name: name}
		set(f)
		if err := s.core.AddFeed(r.Context(), operator(r), f); err != nil {
			return err
		}
		code = http.StatusCreated
	case err != nil:
		return err
	case name == apitype.MainFeed:
		return errorf(http.StatusBadRequest, "the main feed cannot be changed")
	default:
		if f, err = s.core.EditFeed(r.Context(), operator(r), name, set); err != nil {
			return err
		}
	}
	return writeJSON(w, code, apitype.ResultOf(feedJSON(f)))
}

// restDeleteFeed is ePortal's DELETE /admin/api/feeds/{name}: how many
// feeds it deleted, 0 when there is none. Its keys move to main.
func (s *Server) restDeleteFeed(w http.ResponseWriter, r *http.Request) error {
	if _, err := params(r); err != nil {
		return err
	}
	name := r.PathValue("name")
	if name == apitype.MainFeed {
		return errorf(http.StatusBadRequest, "the main feed cannot be deleted")
	}
	err := s.core.DeleteFeed(r.Context(), operator(r), name)
	if errors.Is(err, store.ErrNotFound) {
		return writeJSON(w, http.StatusOK, apitype.ResultOf(0))
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.ResultOf(1))
}

// productParam refuses an ePortal product other than the kernel's.
func productParam(q url.Values) error {
	switch p := q.Get("product"); p {
	case "", "kernel":
		return nil
	case "user", "qemu", "db":
		return errorf(http.StatusBadRequest, "product %s: not supported by kcare: it patches the kernel only", p)
	default:
		return errorf(http.StatusBadRequest, "product %q: want kernel", p)
	}
}

func (s *Server) restPatchsets(w http.ResponseWriter, r *http.Request) error {
	q, err := params(r, "feed", "product")
	if err != nil {
		return err
	}
	if err := productParam(q); err != nil {
		return err
	}
	feed := q.Get("feed")
	if feed == "" {
		feed = apitype.MainFeed
	}
	if _, err := s.core.Feed(r.Context(), feed); err != nil {
		return err
	}
	list, err := s.core.FeedPatchsets(r.Context(), feed)
	if err != nil {
		return err
	}
	out := make([]apitype.Patchset, len(list))
	for i, p := range list {
		st := apitype.PatchsetUndeployed
		switch {
		case p.Enabled:
			st = apitype.PatchsetEnabled
		case p.Deployed:
			st = apitype.PatchsetDisabled
		}
		out[i] = apitype.Patchset{Name: p.Patchset, Status: st, Feed: p.Feed, Released: apitype.TimeOf(p.Released)}
	}
	return writeJSON(w, http.StatusOK, apitype.ListOf(out))
}

// restManagePatchsets is ePortal's POST /admin/api/patchsets/manage: the
// action in every feed named (feed may be given several times), or in
// none when any feed or the patchset does not exist.
func (s *Server) restManagePatchsets(w http.ResponseWriter, r *http.Request) error {
	q, err := params(r, "patchset", "feed", "action", "product")
	if err != nil {
		return err
	}
	if err := productParam(q); err != nil {
		return err
	}
	if q.Get("patchset") == "" {
		return errorf(http.StatusBadRequest, "patchset: required")
	}
	if _, err := s.core.ManagePatchsetsIn(r.Context(), operator(r), q["feed"], q.Get("patchset"), apitype.PatchsetAction(q.Get("action"))); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.OK)
}

// restUsers is ePortal's GET /admin/api/users/.
func (s *Server) restUsers(w http.ResponseWriter, r *http.Request) error {
	if _, err := params(r); err != nil {
		return err
	}
	users, err := s.core.Users(r.Context())
	if err != nil {
		return err
	}
	out := make([]apitype.User, len(users))
	for i, u := range users {
		out[i] = apitype.User{ID: i + 1, Username: u.Name, Readonly: u.Role != apitype.RoleAdmin, Description: string(u.Role)}
	}
	return writeJSON(w, http.StatusOK, apitype.ListOf(out))
}

// restKeyPatchset is ePortal's /admin/api/kcare/patchset/{key}: for each
// server of the key, [ip, kernel_id, level]. The key in the path is the
// credential, as in ePortal.
func (s *Server) restKeyPatchset(w http.ResponseWriter, r *http.Request) error {
	if _, err := params(r); err != nil {
		return err
	}
	data, err := s.core.KeyServerLevels(r.Context(), r.PathValue("key"))
	if errors.Is(err, store.ErrInvalidKey) {
		s.wrongKey(r) // guessing is throttled
		return errorf(http.StatusNotFound, "unknown key")
	} else if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(data))
}

// restNotFound answers a path under /admin/api/ that is no route: a JSON
// 404, never the web UI's page.
func (s *Server) restNotFound(w http.ResponseWriter, r *http.Request) error {
	return errorf(http.StatusNotFound, "no such API route: %s %s", r.Method, apiPathName(r.URL.Path))
}

// apiPathName is path for an error message: its first three segments,
// so that a key in the path is not echoed back whole.
func apiPathName(path string) string {
	parts := strings.SplitN(path, "/", 5)
	if len(parts) > 4 {
		return fmt.Sprintf("%s/…", strings.Join(parts[:4], "/"))
	}
	return path
}
