package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/httperr"
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

// checkInError is the answer to a check-in decodeCheckIn refused.
func checkInError(err error) error {
	switch {
	case errors.Is(err, apitype.ErrBadField):
		return agentError(http.StatusBadRequest, apitype.ErrorCode(err.Error()), err)
	case err != nil:
		return agentError(http.StatusBadRequest, apitype.CodeBadRequest, err)
	}
	return nil
}

func (s *Server) checkin(w http.ResponseWriter, r *http.Request) error {
	in, err := decodeCheckIn(r.Body) // bounded by the route's body limit
	if err := checkInError(err); err != nil {
		return err
	}
	if err := s.core.CheckIn(r.Context(), authnOf(r).caller, in, httperr.RemoteIP(r)); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.OK)
}
