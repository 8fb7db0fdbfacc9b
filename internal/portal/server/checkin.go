package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/store"
)

// decodeCheckIn reads a check-in: exactly one JSON object, with only the
// fields apitype.CheckIn has, each valid. A bad field is an
// apitype.ErrBadField naming it.
func decodeCheckIn(r io.Reader) (*apitype.CheckIn, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var in apitype.CheckIn
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("check-in: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("check-in: more than one JSON value")
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return &in, nil
}

func (s *Server) checkin(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c := authnOf(r).caller
	in, err := decodeCheckIn(r.Body) // bounded by the route's body limit
	switch {
	case errors.Is(err, apitype.ErrBadField):
		return &httpError{code: http.StatusBadRequest, msg: err.Error(), err: err}
	case err != nil:
		return &httpError{code: http.StatusBadRequest, msg: string(apitype.CodeBadRequest), err: err}
	}
	ci := store.CheckIn{
		Hostname: in.Hostname, IP: remoteIP(r), Release: in.Release, BuildID: in.BuildID,
		KernelID: in.KernelID, Level: in.Level, EffectiveRelease: in.EffectiveRelease,
		LastResult: in.Result, AgentVersion: in.AgentVersion, Tags: in.Tags, At: s.now(),
	}
	if c.key == nil {
		srv := *c.server
		srv.Hostname, srv.Release, srv.BuildID, srv.KernelID = in.Hostname, in.Release, in.BuildID, in.KernelID
		srv.Level, srv.EffectiveRelease, srv.LastResult, srv.AgentVersion = in.Level, in.EffectiveRelease, in.Result, in.AgentVersion
		srv.Registered, srv.LastCheckin = s.now(), s.now()
		if in.Tags != nil {
			srv.Tags = *in.Tags
		}
		if err := s.cfg.Store.UpsertIPServer(ctx, &srv, c.feed); err != nil {
			return err
		}
	} else if err := s.cfg.Store.CheckIn(ctx, c.server.ID, ci); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.OK)
}
