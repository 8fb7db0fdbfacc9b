package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/httperr"
	"github.com/kcare/kcare/internal/portal/rollout"
	"github.com/kcare/kcare/internal/portal/store"
)

// The rollout REST API under /admin/api: the rollouts, a feed's policy,
// a key's window, a patchset's urgency; each handler reads its request,
// calls the core, and answers apitype's objects.

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func wavesJSON(w rollout.Waves) []json.Number {
	out := make([]json.Number, len(w))
	for i, bp := range w {
		out[i] = json.Number(rollout.Percent(bp))
	}
	return out
}

func rolloutJSON(r *store.Rollout) apitype.Rollout {
	w, _ := rollout.ParseWaves(r.Waves)
	return apitype.Rollout{ID: r.ID, Feed: r.Feed, Patchset: r.Patchset, Waves: wavesJSON(w), Wave: r.Wave + 1,
		State: apitype.RolloutState(r.State), Reason: r.Reason, Urgent: r.Urgent,
		Started: timePtr(r.Started), WaveStarted: timePtr(r.WaveStarted), Updated: timePtr(r.Updated)}
}

func (s *Server) restRollouts(w http.ResponseWriter, r *http.Request) error {
	rs, err := s.core.Rollouts(r.Context(), r.URL.Query().Get("feed"))
	if err != nil {
		return err
	}
	out := make([]apitype.Rollout, len(rs))
	for i := range rs {
		out[i] = rolloutJSON(&rs[i])
	}
	return writeJSON(w, http.StatusOK, apitype.DataOf(out))
}

// rolloutID reads the {id} of a rollout route.
func rolloutID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusNotFound, "no such rollout")
	}
	return id, nil
}

func (s *Server) restRollout(w http.ResponseWriter, r *http.Request) error {
	id, err := rolloutID(r)
	if err != nil {
		return err
	}
	st, err := s.core.Rollout(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rolloutDetail(st))
}

// rolloutDetail is a rollout's status as the REST API answers it.
func rolloutDetail(st *core.RolloutStatus) apitype.RolloutDetail {
	out := apitype.RolloutDetail{Rollout: rolloutJSON(&st.Rollout), Verdict: string(st.Decision.Verdict), Next: st.Decision.Reason,
		Health: []apitype.RolloutWave{}, Servers: []apitype.RolloutServer{}}
	waves, _ := rollout.ParseWaves(st.Waves)
	for i, sg := range st.Decision.Waves {
		out.Health = append(out.Health, apitype.RolloutWave{Wave: i + 1, Share: json.Number(rollout.Percent(waves[i])), Size: st.WaveSizes[i],
			Servers: sg.Servers, Applied: sg.Applied, Failures: sg.Failures, Warnings: sg.Warnings, Oopses: sg.Oopses,
			Taints: sg.Taints, Reboots: sg.Reboots, Silent: sg.Silent})
	}
	for _, srv := range st.Servers {
		h := srv.Signals.Problems()
		if h == "" {
			h = "ok"
		}
		out.Servers = append(out.Servers, apitype.RolloutServer{ID: srv.ID, Wave: srv.Wave + 1, Level: srv.Level, Target: srv.Target, Health: h})
	}
	return out
}

func (s *Server) restRolloutAction(w http.ResponseWriter, r *http.Request) error {
	id, err := rolloutID(r)
	if err != nil {
		return err
	}
	next, err := s.core.RolloutAction(r.Context(), operator(r), id, rollout.Action(r.PathValue("action")))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rolloutJSON(next))
}

// policyJSON is a policy as the REST API answers it.
func policyJSON(p rollout.Policy) apitype.RolloutPolicy {
	return apitype.RolloutPolicy{Waves: wavesJSON(p.Waves), Soak: p.Soak.String(), AutoRollback: p.AutoRollback,
		MaxFailures: p.MaxFailures, MaxWarnings: p.MaxWarnings, MaxOopses: p.MaxOopses, MaxTaints: p.MaxTaints,
		MaxReboots: p.MaxReboots, MaxSilent: p.MaxSilent, SilentAfter: p.SilentAfter.String(), MinCheckedIn: p.MinCheckedIn,
		Window: p.Window, UrgentSkipsWindow: p.UrgentSkipsWindow}
}

func (s *Server) restRolloutPolicy(w http.ResponseWriter, r *http.Request) error {
	p, err := s.core.RolloutPolicy(r.Context(), r.PathValue("feed"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, policyJSON(p))
}

// restSetRolloutPolicy sets the fields of a feed's policy the body names;
// the others keep their values.
func (s *Server) restSetRolloutPolicy(w http.ResponseWriter, r *http.Request) error {
	feed := r.PathValue("feed")
	p, err := s.core.RolloutPolicy(r.Context(), feed)
	if err != nil {
		return err
	}
	in := policyJSON(p)
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	bad := func(field string, err error) error {
		return errorf(http.StatusBadRequest, "%s: %v", field, err)
	}
	parts := make([]string, len(in.Waves))
	for i, n := range in.Waves {
		parts[i] = n.String()
	}
	if p.Waves, err = rollout.ParseWaves(strings.Join(parts, ",")); err != nil {
		return bad("waves", err)
	}
	for _, d := range []struct {
		field string
		in    string
		dst   *rollout.Duration
	}{{"soak", in.Soak, &p.Soak}, {"silent_after", in.SilentAfter, &p.SilentAfter}} {
		v, err := time.ParseDuration(d.in)
		if err != nil {
			return bad(d.field, err)
		}
		*d.dst = rollout.Duration(v)
	}
	p.AutoRollback, p.MaxFailures, p.MaxWarnings, p.MaxOopses = in.AutoRollback, in.MaxFailures, in.MaxWarnings, in.MaxOopses
	p.MaxTaints, p.MaxReboots, p.MaxSilent, p.MinCheckedIn = in.MaxTaints, in.MaxReboots, in.MaxSilent, in.MinCheckedIn
	p.Window, p.UrgentSkipsWindow = in.Window, in.UrgentSkipsWindow
	if err := s.core.SetRolloutPolicy(r.Context(), operator(r), feed, p); err != nil {
		return err
	}
	if p, err = s.core.RolloutPolicy(r.Context(), feed); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, policyJSON(p))
}

// restKeyWindow sets a key's own maintenance window; the key is in the
// body, never in the URL.
func (s *Server) restKeyWindow(w http.ResponseWriter, r *http.Request) error {
	var in apitype.KeyWindow
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := s.core.SetKeyWindow(r.Context(), operator(r), in.Key, in.Window); err != nil {
		return err
	}
	in.Key = keyFor(r, in.Key)
	return writeJSON(w, http.StatusOK, in)
}

func (s *Server) restPatchsetUrgent(w http.ResponseWriter, r *http.Request) error {
	var in apitype.Urgency
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := s.core.SetPatchsetUrgent(r.Context(), operator(r), r.PathValue("patchset"), in.Urgent); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, in)
}

// decodeJSON reads a request's JSON body into v: one object with only the
// fields v has.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body) // bounded by the route's body limit
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return httperr.Wrap(http.StatusBadRequest, "bad JSON body: "+err.Error(), err)
	}
	return nil
}
