package server

import (
	"errors"
	"net/http"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/fleet"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/textline"
)

// nagiosKey is KernelCare's Nagios API for the servers of one key:
// GET /admin/api/kcare/nagios/{key} and GET /api/kcare/nagios/{key}. The
// key is the credential, as in KernelCare.
func (s *Server) nagiosKey(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	cs, err := s.core.KeyServers(r.Context(), key)
	// KernelCare's answer names the key asked about (escaped: it is the
	// caller's own text, and must stay one line without perfdata).
	notFound := "Servers not found for key " + textline.Escape(key) + "\n"
	switch {
	case errors.Is(err, store.ErrInvalidKey):
		s.wrongKey(r)
		return nagiosText(w, http.StatusNotFound, notFound)
	case errors.Is(err, core.ErrNoServers):
		return nagiosText(w, http.StatusNotFound, notFound)
	case err != nil:
		return err
	}
	return nagiosText(w, http.StatusOK, fleet.NagiosReport(cs))
}

// nagiosReseller is KernelCare's Nagios API for a reseller: the servers
// whose address is in the reseller's IP ranges,
// GET /api/kcare/nagios-res/{login}/{token}.
func (s *Server) nagiosReseller(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.core.ResellerServers(r.Context(), r.PathValue("login"), r.PathValue("token"))
	switch {
	case errors.Is(err, core.ErrNoReseller):
		s.wrongKey(r)
		return nagiosText(w, http.StatusNotFound, "Reseller not found\n")
	case errors.Is(err, core.ErrResellerToken):
		s.wrongKey(r)
		return nagiosText(w, http.StatusNotFound, "Registration token not found for reseller\n")
	case errors.Is(err, core.ErrNoServers):
		return nagiosText(w, http.StatusNotFound, "Servers not found for reseller\n")
	case err != nil:
		return err
	}
	return nagiosText(w, http.StatusOK, fleet.NagiosReport(cs))
}

func nagiosText(w http.ResponseWriter, code int, body string) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, err := w.Write([]byte(body))
	return err
}

// nagiosRollouts is the rollouts' Nagios check, for an operator's API
// token: CRITICAL while a rollout is halted or rolled back.
func (s *Server) nagiosRollouts(w http.ResponseWriter, r *http.Request) error {
	rs, err := s.core.Rollouts(r.Context(), "")
	if err != nil {
		return err
	}
	return nagiosText(w, http.StatusOK, fleet.NagiosRollouts(rs))
}
