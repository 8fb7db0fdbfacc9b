package server

import (
	"net/http"
	"time"
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
	out, err := s.core.MirrorLevels(r.Context(), since)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}
