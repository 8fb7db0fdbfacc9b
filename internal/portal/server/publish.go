package server

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/httperr"
	"github.com/kcare/kcare/internal/portal/store"
)

// publish is POST /api/v1/publish: a multipart form with the files
// "bundle" and "signature" and the fields released (RFC 3339), channel,
// patchset. It needs an admin's API token.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseMultipartForm(8 << 20); err != nil {
		return httperr.Wrap(http.StatusBadRequest, "bad multipart form", err)
	}
	read := func(name string, max int64) ([]byte, error) {
		f, _, err := r.FormFile(name)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "missing %s", name)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, max+1))
		if err != nil {
			return nil, err
		}
		if int64(len(b)) > max {
			return nil, errorf(http.StatusRequestEntityTooLarge, "%s too large", name)
		}
		return b, nil
	}
	data, err := read("bundle", bundle.MaxBundleSize)
	if err != nil {
		return err
	}
	sig, err := read("signature", bundle.MaxSignatureSize)
	if err != nil {
		return err
	}
	var o core.PublishOptions
	if v := r.FormValue("released"); v != "" {
		if o.Released, err = time.Parse(time.RFC3339, v); err != nil {
			return errorf(http.StatusBadRequest, "released: %v", err)
		}
	}
	o.Channel, o.Patchset = apitype.Channel(r.FormValue("channel")), r.FormValue("patchset")
	l, err := s.core.Publish(r.Context(), core.Operator(userOf(r), httperr.RemoteIP(r)), data, sig, o)
	if err != nil {
		if errors.Is(err, core.ErrNoPublisherKeys) || store.Full(err) || store.Unavailable(err) {
			return err // the portal's own situation, answered by httperr.From: 409, 507, 503
		}
		code := http.StatusBadRequest
		if errors.Is(err, store.ErrExists) {
			code = http.StatusConflict
		}
		msg := err.Error()
		if i := strings.Index(msg, "\n"); i >= 0 {
			msg = msg[:i]
		}
		return httperr.Wrap(code, msg, err)
	}
	return writeJSON(w, http.StatusOK, apitype.Published{
		BuildID: l.BuildID, Release: l.Release, Level: l.Level, Patchset: l.Patchset,
		Channel: l.Channel, Digest: l.Digest, Size: l.Size, Released: l.Released,
	})
}

// apiUser authenticates an operator by an X-Api-Key or, as ePortal takes
// it, a user and password in HTTP basic auth (checked as the sign-in page
// checks them, under its throttle); a route needing roleAdmin refuses
// other roles.
func (s *Server) apiUser(r *http.Request, role apitype.Role) (*store.User, error) {
	tok := r.Header.Get("X-Api-Key")
	if tok == "" {
		// ePortal's API takes an operator's user and password too.
		name, password, ok := r.BasicAuth()
		if !ok {
			return nil, &httperr.Error{Code: http.StatusUnauthorized, Msg: "X-Api-Key or HTTP basic auth (user and password) required",
				Header: http.Header{"Www-Authenticate": {`Basic realm="eportal"`}}}
		}
		u, err := s.ui.CheckPassword(r.Context(), name, password, httperr.RemoteIP(r))
		if err != nil {
			return nil, err
		}
		if role == roleAdmin && u.Role != apitype.RoleAdmin {
			return nil, errorf(http.StatusForbidden, "admin role required")
		}
		return u, nil
	}
	u, err := s.core.TokenUser(r.Context(), tok, role == roleAdmin)
	if errors.Is(err, core.ErrBadToken) {
		return nil, errorf(http.StatusUnauthorized, "bad API key")
	}
	if errors.Is(err, core.ErrNotAdmin) {
		return nil, errorf(http.StatusForbidden, "admin role required")
	}
	return u, err
}
