package server

import (
	"errors"
	"net/http"

	"github.com/kcare/kcare/internal/portal/auth"
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
			s.wrongKey(r)
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

// nagiosReseller is KernelCare's Nagios API for a reseller: the servers
// whose address is in the reseller's IP ranges,
// GET /api/kcare/nagios-res/{login}/{token}.
func (s *Server) nagiosReseller(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	rs, ok := s.cfg.Store.(store.ResellerStore)
	if !ok {
		return nagiosText(w, http.StatusNotFound, "Reseller not found\n")
	}
	res, err := rs.Reseller(ctx, r.PathValue("login"))
	if errors.Is(err, store.ErrNotFound) {
		s.wrongKey(r)
		return nagiosText(w, http.StatusNotFound, "Reseller not found\n")
	}
	if err != nil {
		return err
	}
	if len(res.TokenHash) == 0 || !auth.SecretMatches(res.TokenHash, r.PathValue("token")) {
		s.wrongKey(r)
		return nagiosText(w, http.StatusNotFound, "Registration token not found for reseller\n")
	}
	all, err := s.cfg.Store.Servers(ctx, store.ServerFilter{})
	if err != nil {
		return err
	}
	var mine []store.Server
	for _, srv := range all {
		for _, c := range res.CIDRs {
			if cidrContains(c, srv.IP) {
				mine = append(mine, srv)
				break
			}
		}
	}
	if len(mine) == 0 {
		return nagiosText(w, http.StatusNotFound, "Servers not found for reseller\n")
	}
	cs, err := s.evaluator().Classify(ctx, mine)
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
