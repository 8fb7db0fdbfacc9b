package server

import (
	"errors"
	"net/http"

	"github.com/kcare/kcare/internal/portal/fleet"
	"github.com/kcare/kcare/internal/portal/store"
)

// nagiosKey is KernelCare's Nagios API for the servers of one key:
// GET /admin/api/kcare/nagios/{key} and GET /api/kcare/nagios/{key}. The
// key is the credential, as in KernelCare.
func (s *Server) nagiosKey(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	key := r.PathValue("key")
	if _, err := s.cfg.Store.Key(ctx, key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nagiosText(w, http.StatusNotFound, "Servers not found for key\n")
		}
		return err
	}
	list, err := s.cfg.Store.Servers(ctx, store.ServerFilter{Key: key})
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return nagiosText(w, http.StatusNotFound, "Servers not found for key\n")
	}
	cs, err := s.evaluator().Classify(ctx, list)
	if err != nil {
		return err
	}
	return nagiosText(w, http.StatusOK, fleet.NagiosReport(cs))
}

func (s *Server) evaluator() *fleet.Evaluator {
	return &fleet.Evaluator{Store: s.cfg.Store, Now: s.now(), InactiveAge: s.cfg.InactiveAge}
}

func nagiosText(w http.ResponseWriter, code int, body string) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, err := w.Write([]byte(body))
	return err
}
