package web

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"strconv"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/rollout"
	"github.com/kcare/kcare/internal/portal/store"
)

// feedRolloutsShown bounds the rollouts a feed page shows, newest first.
const feedRolloutsShown = 5

// rolloutView is a rollout as the feed page shows it.
type rolloutView struct {
	*core.RolloutStatus
	Waves   []waveView
	Actions []rollout.Action // what an admin may do to it now
	Chart   template.HTML
}

// waveView is one wave's row.
type waveView struct {
	N, Size int
	Share   string
	Current bool
	rollout.Signals
	Problems string
}

// feedRollouts returns the newest rollouts of feed, each with the health
// of its waves now and its chart.
func (u *UI) feedRollouts(ctx context.Context, feed string) ([]rolloutView, error) {
	rs, err := u.core.Rollouts(ctx, feed)
	if err != nil {
		return nil, err
	}
	var out []rolloutView
	for i := range rs {
		if len(out) == feedRolloutsShown {
			break
		}
		st, err := u.core.Rollout(ctx, rs[i].ID)
		if err != nil {
			return nil, err
		}
		samples, err := u.core.RolloutSamples(ctx, rs[i].ID)
		if err != nil {
			return nil, err
		}
		v := rolloutView{RolloutStatus: st, Chart: RolloutChart(st, samples, u.now())}
		waves, _ := rollout.ParseWaves(st.Waves)
		for j, sg := range st.Decision.Waves {
			v.Waves = append(v.Waves, waveView{N: j + 1, Size: st.WaveSizes[j], Share: rollout.Percent(waves[j]), Current: j == st.Wave,
				Signals: sg, Problems: sg.Problems()})
		}
		for _, a := range rollout.Actions {
			if _, _, err := a.Apply(rollout.State(st.State), st.Wave, len(waves)); err == nil {
				v.Actions = append(v.Actions, a)
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// rolloutAction is an admin's action on a rollout from its feed's page.
func (u *UI) rolloutAction(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return errorf(http.StatusNotFound, "no such rollout")
	}
	next, err := u.core.RolloutAction(r.Context(), c.actor(r), id, rollout.Action(r.PostFormValue("action")))
	if err != nil {
		return err
	}
	return redirect(w, r, "/admin/feeds/"+url.PathEscape(next.Feed)+"#rollout-"+strconv.FormatInt(id, 10))
}

// stopped lists the rollouts halted or rolled back, for the banner every
// page shows.
func (u *UI) stopped(ctx context.Context) []store.Rollout {
	rs, err := u.core.Rollouts(ctx, "")
	if err != nil {
		u.cfg.Log.Error("read rollouts for the banner", "error", err)
		return nil
	}
	var out []store.Rollout
	for _, r := range rs {
		if r.State == string(rollout.Halted) || r.State == string(rollout.RolledBack) {
			out = append(out, r)
		}
	}
	return out
}
