package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/store"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func serverJSON(s store.Server) apitype.Server {
	out := apitype.Server{
		ID: s.ID, Hostname: s.Hostname, IP: s.IP, Key: s.Key, Kernel: s.Release, KernelID: s.KernelID,
		BuildID: s.BuildID, PatchLevel: s.Level, EffectiveKernel: s.EffectiveRelease, LastResult: s.LastResult,
		AgentVersion: s.AgentVersion, Tags: s.Tags, Registered: s.Registered,
	}
	if !s.LastCheckin.IsZero() {
		t := s.LastCheckin
		out.Checkin = &t
	}
	return out
}

func (s *Server) restServers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.ServerFilter{Hostname: q.Get("hostname"), IP: q.Get("ip"), Key: q.Get("key"), Feed: q.Get("feed"), Tag: q.Get("tag"), Now: s.now()}
	var err error
	if v := q.Get("checkin_age"); v != "" {
		// Hours, as ePortal takes it, or a Go duration.
		if h, e := strconv.Atoi(v); e == nil {
			f.CheckinAge = time.Duration(h) * time.Hour
		} else if f.CheckinAge, err = time.ParseDuration(v); err != nil {
			return errorf(http.StatusBadRequest, "checkin_age: hours or a duration like 36h")
		}
	}
	if v := q.Get("is_updated"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "is_updated: true or false")
		}
		f.IsUpdated = &b
	}
	if f.Limit, err = intParam(q.Get("limit"), 0); err != nil {
		return errorf(http.StatusBadRequest, "limit: %v", err)
	}
	if f.Offset, err = intParam(q.Get("offset"), 0); err != nil {
		return errorf(http.StatusBadRequest, "offset: %v", err)
	}
	list, err := s.cfg.Store.Servers(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]apitype.Server, len(list))
	for i, srv := range list {
		out[i] = serverJSON(srv)
		out[i].Key = keyFor(r, srv.Key)
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(out))
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

func (s *Server) restKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.cfg.Store.Keys(r.Context())
	if err != nil {
		return err
	}
	out := make([]apitype.Key, len(keys))
	for i, k := range keys {
		out[i] = apitype.Key{Key: keyFor(r, k.Key), Note: k.Note, Limit: k.Limit, Feed: k.Feed, Sticky: k.Sticky, IPRanges: k.IPRanges, Servers: k.Servers, Created: k.Created}
		if out[i].IPRanges == nil {
			out[i].IPRanges = []string{}
		}
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(out))
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body) // bounded by the route's body limit
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &httpError{code: http.StatusBadRequest, msg: "bad JSON body: " + err.Error(), err: err}
	}
	return nil
}

func storeError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &httpError{code: http.StatusNotFound, msg: err.Error(), err: err}
	case errors.Is(err, store.ErrExists):
		return &httpError{code: http.StatusConflict, msg: "already exists", err: err}
	case errors.Is(err, store.ErrInvalidInput):
		return &httpError{code: http.StatusBadRequest, msg: err.Error(), err: err}
	case errors.Is(err, store.ErrInUse):
		return &httpError{code: http.StatusConflict, msg: err.Error(), err: err}
	}
	return err
}

func (s *Server) restAddKey(w http.ResponseWriter, r *http.Request) error {
	u := userOf(r)
	var in apitype.Key
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	if in.Key == "" {
		in.Key = NewKey()
	}
	if in.Feed == "" {
		in.Feed = apitype.MainFeed
	}
	k := &store.Key{Key: in.Key, Note: in.Note, Limit: in.Limit, Feed: in.Feed, Sticky: in.Sticky, IPRanges: in.IPRanges, Created: s.now()}
	if err := s.cfg.Store.AddKey(r.Context(), k); err != nil {
		return storeError(err)
	}
	s.auditChange(r, u.Name, "key.add", k.Key, "feed="+k.Feed+" limit="+strconv.Itoa(k.Limit), nil, store.AuditKey(k))
	in.Created = k.Created
	return writeJSON(w, http.StatusCreated, in)
}

func (s *Server) restDeleteKey(w http.ResponseWriter, r *http.Request) error {
	u := userOf(r)
	key := r.PathValue("key")
	before, err := s.cfg.Store.Key(r.Context(), key)
	if err != nil {
		return storeError(err)
	}
	if err := s.cfg.Store.DeleteKey(r.Context(), key); err != nil {
		return storeError(err)
	}
	s.auditChange(r, u.Name, "key.delete", key, "", store.AuditKey(before), nil)
	return writeJSON(w, http.StatusOK, apitype.OK)
}

func (s *Server) restFeeds(w http.ResponseWriter, r *http.Request) error {
	feeds, err := s.cfg.Store.Feeds(r.Context())
	if err != nil {
		return err
	}
	out := make([]apitype.Feed, len(feeds))
	for i, f := range feeds {
		out[i] = apitype.Feed{Name: f.Name, Channel: f.Channel, DeployAfterHours: int(f.DeployAfter / time.Hour), Auto: f.Auto}
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(out))
}

func (s *Server) restAddFeed(w http.ResponseWriter, r *http.Request) error {
	u := userOf(r)
	var in apitype.Feed
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	if in.Channel == "" {
		in.Channel = apitype.ChannelStable
	}
	f := &store.Feed{Name: in.Name, Channel: in.Channel, DeployAfter: time.Duration(in.DeployAfterHours) * time.Hour, Auto: in.Auto, Created: s.now()}
	if err := s.cfg.Store.AddFeed(r.Context(), f); err != nil {
		return storeError(err)
	}
	s.auditChange(r, u.Name, "feed.add", f.Name, "channel="+string(f.Channel), nil, f)
	return writeJSON(w, http.StatusCreated, in)
}

func (s *Server) restPatchsets(w http.ResponseWriter, r *http.Request) error {
	feed := r.URL.Query().Get("feed")
	if feed == "" {
		feed = apitype.MainFeed
	}
	list, err := s.cfg.Store.FeedPatchsets(r.Context(), feed)
	if err != nil {
		return storeError(err)
	}
	out := make([]apitype.Patchset, len(list))
	for i, p := range list {
		out[i] = apitype.Patchset{Name: p.Patchset, Feed: p.Feed, Enabled: p.Enabled, Released: p.Released}
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(out))
}

// ManagePatchsets applies an ePortal patchset action in a feed: enable or
// disable one patchset, enable-upto (it and every older one), or
// undeploy-downto (disable it and every newer one).
func ManagePatchsets(ctx context.Context, st store.Store, feed, patchset string, action apitype.PatchsetAction) ([]string, error) {
	list, err := st.FeedPatchsets(ctx, feed)
	if err != nil {
		return nil, err
	}
	pos := -1
	for i, p := range list {
		if p.Patchset == patchset {
			pos = i
		}
	}
	if pos < 0 {
		return nil, fmt.Errorf("patchset %s in feed %s: %w", patchset, feed, store.ErrNotFound)
	}
	var names []string
	enable := true
	switch action {
	case apitype.ActionEnable:
		names = []string{patchset}
	case apitype.ActionDisable:
		names, enable = []string{patchset}, false
	case apitype.ActionEnableUpTo:
		for _, p := range list[:pos+1] {
			names = append(names, p.Patchset)
		}
	case apitype.ActionUndeployDownTo:
		for _, p := range list[pos:] {
			names = append(names, p.Patchset)
		}
		enable = false
	default:
		return nil, fmt.Errorf("%w: action %q: enable, disable, enable-upto or undeploy-downto", store.ErrInvalidInput, action)
	}
	return names, st.SetPatchsets(ctx, feed, names, enable)
}

func (s *Server) restManagePatchsets(w http.ResponseWriter, r *http.Request) error {
	u := userOf(r)
	q := r.URL.Query()
	feed, patchset, action := q.Get("feed"), q.Get("patchset"), apitype.PatchsetAction(q.Get("action"))
	if feed == "" {
		feed = apitype.MainFeed
	}
	before, _ := store.EnabledPatchsets(r.Context(), s.cfg.Store, feed)
	names, err := ManagePatchsets(r.Context(), s.cfg.Store, feed, patchset, action)
	if err != nil {
		return storeError(err)
	}
	after, _ := store.EnabledPatchsets(r.Context(), s.cfg.Store, feed)
	s.auditChange(r, u.Name, "patchset."+string(action), feed+"/"+patchset, strings.Join(names, ","), before, after)
	return writeJSON(w, http.StatusOK, apitype.Managed{Patchsets: names, Result: apitype.ResultOK})
}

// restKeyPatchset is ePortal's /admin/api/kcare/patchset/{key}: for each
// server of the key, [ip, kernel_id, level].
func (s *Server) restKeyPatchset(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	if _, err := s.cfg.Store.KeySettings(r.Context(), key); errors.Is(err, store.ErrNotFound) {
		s.wrongKey(r) // the answer is the same empty list, but guessing is throttled
	} else if err != nil {
		return err
	}
	list, err := s.cfg.Store.Servers(r.Context(), store.ServerFilter{Key: key})
	if err != nil {
		return err
	}
	data := make([]apitype.ServerLevel, len(list))
	for i, srv := range list {
		data[i] = apitype.ServerLevel{IP: srv.IP, KernelID: srv.KernelID, Level: srv.Level}
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(data))
}
