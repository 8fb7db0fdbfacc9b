package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/mirror"
	"github.com/kcare/kcare/internal/portal/store"
)

// mirrorLevels lists, for a mirror's sync, the levels published at or
// after ?since= (RFC 3339), oldest first, with their publisher signatures. Any
// API token may read it.
func (s *Server) mirrorLevels(w http.ResponseWriter, r *http.Request) error {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return errorf(http.StatusBadRequest, "since: %v", err)
		}
		since = t
	}
	ll, ok := s.cfg.Store.(store.LevelLister)
	if !ok {
		return errors.New("store cannot list levels")
	}
	all, err := ll.AllLevels(r.Context(), since)
	if err != nil {
		return err
	}
	out := apitype.MirrorLevels{Levels: make([]apitype.MirrorLevel, len(all))}
	for i, l := range all {
		out.Levels[i] = mirror.FromStore(l)
	}
	return writeJSON(w, http.StatusOK, out)
}
