package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/httperr"
	"github.com/kcare/kcare/internal/portal/store"
)

// ePortal's REST API under /admin/api: each handler reads its request,
// calls the core, and answers the core's objects as apitype's.

// operator is the actor of a REST request: its API token's user.
func operator(r *http.Request) core.Actor { return core.Operator(userOf(r), httperr.RemoteIP(r)) }

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
	f := store.ServerFilter{Hostname: q.Get("hostname"), IP: q.Get("ip"), Key: q.Get("key"), Feed: q.Get("feed"), Tag: q.Get("tag")}
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
	list, err := s.core.Servers(r.Context(), f)
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
	keys, err := s.core.Keys(r.Context())
	if err != nil {
		return err
	}
	out := make([]apitype.Key, len(keys))
	for i, k := range keys {
		out[i] = keyJSON(&k)
		out[i].Key = keyFor(r, k.Key)
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(out))
}

func keyJSON(k *store.Key) apitype.Key {
	out := apitype.Key{Key: k.Key, Note: k.Note, Limit: k.Limit, Feed: k.Feed, Sticky: k.Sticky, IPRanges: k.IPRanges, Servers: k.Servers, Created: k.Created}
	if out.IPRanges == nil {
		out.IPRanges = []string{}
	}
	return out
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body) // bounded by the route's body limit
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return httperr.Wrap(http.StatusBadRequest, "bad JSON body: "+err.Error(), err)
	}
	return nil
}

func (s *Server) restAddKey(w http.ResponseWriter, r *http.Request) error {
	var in apitype.Key
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	k := &store.Key{Key: in.Key, Note: in.Note, Limit: in.Limit, Feed: in.Feed, Sticky: in.Sticky, IPRanges: in.IPRanges}
	if err := s.core.AddKey(r.Context(), operator(r), k); err != nil {
		return err
	}
	// The answer is the key as asked for, with what the portal chose.
	in.Key, in.Feed, in.Created = k.Key, k.Feed, k.Created
	return writeJSON(w, http.StatusCreated, in)
}

func (s *Server) restDeleteKey(w http.ResponseWriter, r *http.Request) error {
	if err := s.core.DeleteKey(r.Context(), operator(r), r.PathValue("key")); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.OK)
}

func (s *Server) restFeeds(w http.ResponseWriter, r *http.Request) error {
	feeds, err := s.core.Feeds(r.Context())
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
	var in apitype.Feed
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	f := &store.Feed{Name: in.Name, Channel: in.Channel, DeployAfter: time.Duration(in.DeployAfterHours) * time.Hour, Auto: in.Auto}
	if err := s.core.AddFeed(r.Context(), operator(r), f); err != nil {
		return err
	}
	in.Channel = f.Channel
	return writeJSON(w, http.StatusCreated, in)
}

func (s *Server) restPatchsets(w http.ResponseWriter, r *http.Request) error {
	feed := r.URL.Query().Get("feed")
	if feed == "" {
		feed = apitype.MainFeed
	}
	list, err := s.core.FeedPatchsets(r.Context(), feed)
	if err != nil {
		return err
	}
	out := make([]apitype.Patchset, len(list))
	for i, p := range list {
		out[i] = apitype.Patchset{Name: p.Patchset, Feed: p.Feed, Enabled: p.Enabled, Released: p.Released}
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(out))
}

func (s *Server) restManagePatchsets(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	names, err := s.core.ManagePatchsets(r.Context(), operator(r), q.Get("feed"), q.Get("patchset"), apitype.PatchsetAction(q.Get("action")))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.Managed{Patchsets: names, Result: apitype.ResultOK})
}

// restKeyPatchset is ePortal's /admin/api/kcare/patchset/{key}: for each
// server of the key, [ip, kernel_id, level].
func (s *Server) restKeyPatchset(w http.ResponseWriter, r *http.Request) error {
	data, err := s.core.KeyServerLevels(r.Context(), r.PathValue("key"))
	if errors.Is(err, store.ErrInvalidKey) {
		s.wrongKey(r) // the answer is the same empty list, but guessing is throttled
	} else if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(data))
}
