package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/store"
)

var patchsetRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// PublishOptions are what a publisher may set beside the bundle.
type PublishOptions struct {
	Released time.Time       // zero: the manifest's release time
	Channel  apitype.Channel // stable (default) or test
	Patchset string          // default K<YYYYMMDD>_01 of the release time
}

// Publish verifies a bundle against the publisher keyring and stores it
// as a level. It is what POST /api/v1/publish and eportal's own import do.
func (s *Server) Publish(ctx context.Context, data, sig []byte, o PublishOptions) (*store.Level, error) {
	b, err := bundle.Open(data, sig, s.cfg.Publishers)
	if err != nil {
		return nil, err
	}
	m := b.Manifest
	l := &store.Level{
		BuildID:          m.Kernel.BuildID,
		KernelID:         m.Kernel.KernelID,
		Release:          m.Kernel.Release,
		Level:            m.Level,
		Channel:          o.Channel,
		Size:             int64(len(data)),
		Signature:        sig,
		EffectiveRelease: m.EffectiveReleaseOr(),
		Released:         m.Released,
		Published:        s.now(),
		Patchset:         o.Patchset,
	}
	if !o.Released.IsZero() {
		l.Released = o.Released.UTC()
	}
	if l.Channel == "" {
		l.Channel = apitype.ChannelStable
	}
	if !l.Channel.Valid() {
		return nil, fmt.Errorf("%w: channel %q (stable or test)", store.ErrInvalidInput, l.Channel)
	}
	if l.Patchset == "" {
		l.Patchset = "K" + l.Released.Format("20060102") + "_01"
	}
	if !patchsetRE.MatchString(l.Patchset) {
		return nil, fmt.Errorf("%w: patchset name %q", store.ErrInvalidInput, l.Patchset)
	}
	for _, c := range m.CVEs {
		l.CVEs = append(l.CVEs, store.CVE{ID: c.ID, Description: c.Description, URL: c.URL})
	}
	if l.Manifest, err = manifestJSON(b); err != nil {
		return nil, err
	}
	if l.Digest, err = s.cfg.Blobs.Put(data); err != nil {
		return nil, fmt.Errorf("store bundle: %w", err)
	}
	if err := s.cfg.Store.AddLevel(ctx, l); err != nil {
		return nil, err
	}
	return l, nil
}

func manifestJSON(b *bundle.Bundle) ([]byte, error) {
	return jsonMarshal(b.Manifest)
}

// publish is POST /api/v1/publish: a multipart form with the files
// "bundle" and "signature" and the fields released (RFC 3339), channel,
// patchset. It needs an admin's API token.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) error {
	user := userOf(r)
	if err := r.ParseMultipartForm(8 << 20); err != nil {
		return &httpError{code: http.StatusBadRequest, msg: "bad multipart form", err: err}
	}
	read := func(name string, max int64) ([]byte, error) {
		f, _, err := r.FormFile(name)
		if err != nil {
			return nil, &httpError{code: http.StatusBadRequest, msg: "missing " + name}
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, max+1))
		if err != nil {
			return nil, err
		}
		if int64(len(b)) > max {
			return nil, &httpError{code: http.StatusRequestEntityTooLarge, msg: name + " too large"}
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
	var o PublishOptions
	if v := r.FormValue("released"); v != "" {
		if o.Released, err = time.Parse(time.RFC3339, v); err != nil {
			return errorf(http.StatusBadRequest, "released: %v", err)
		}
	}
	o.Channel, o.Patchset = apitype.Channel(r.FormValue("channel")), r.FormValue("patchset")
	l, err := s.Publish(r.Context(), data, sig, o)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, store.ErrExists) {
			code = http.StatusConflict
		}
		msg := err.Error()
		if i := strings.Index(msg, "\n"); i >= 0 {
			msg = msg[:i]
		}
		return &httpError{code: code, msg: msg, err: err}
	}
	s.auditChange(r, user.Name, "level.publish", fmt.Sprintf("%s/%d", l.BuildID, l.Level),
		fmt.Sprintf("release=%s patchset=%s channel=%s digest=%s", l.Release, l.Patchset, l.Channel, l.Digest), nil, LevelAudit(l))
	return writeJSON(w, http.StatusOK, apitype.Published{
		BuildID: l.BuildID, Release: l.Release, Level: l.Level, Patchset: l.Patchset,
		Channel: l.Channel, Digest: l.Digest, Size: l.Size, Released: l.Released,
	})
}

// apiUser authenticates an X-Api-Key; admin requires the admin role.
func (s *Server) apiUser(r *http.Request, admin bool) (*store.User, error) {
	tok := r.Header.Get("X-Api-Key")
	if tok == "" {
		return nil, errorf(http.StatusUnauthorized, "X-Api-Key required")
	}
	t, err := s.cfg.Store.TokenByHash(r.Context(), auth.HashSecret(tok))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusUnauthorized, "bad API key")
	}
	if err != nil {
		return nil, err
	}
	u, err := s.cfg.Store.User(r.Context(), t.User)
	if err != nil {
		return nil, errorf(http.StatusUnauthorized, "bad API key")
	}
	if admin && u.Role != apitype.RoleAdmin {
		return nil, errorf(http.StatusForbidden, "admin role required")
	}
	return u, nil
}

// LevelAudit is a published level as the audit log shows it.
func LevelAudit(l *store.Level) map[string]any {
	return map[string]any{"build_id": l.BuildID, "release": l.Release, "level": l.Level, "patchset": l.Patchset,
		"channel": l.Channel, "digest": l.Digest, "released": l.Released, "cves": len(l.CVEs)}
}
