package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/resolve"
	"github.com/kcare/kcare/internal/portal/store"
)

// register is ePortal's POST /admin/api/register (form key, hostname).
// The activation key is the credential.
func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return &httpError{code: http.StatusBadRequest, msg: string(apitype.CodeBadRequest), err: err}
	}
	key := strings.TrimSpace(r.PostForm.Get(apitype.RegisterKeyArg))
	hostname := strings.TrimSpace(r.PostForm.Get(apitype.RegisterHostArg))
	if key == "" {
		return agentError(http.StatusBadRequest, apitype.CodeInvalidKey, nil)
	}
	if !apitype.ValidHostname(hostname) {
		return agentError(http.StatusBadRequest, apitype.CodeBadHostname, nil)
	}
	secret := auth.NewSecret()
	srv := &store.Server{
		ID:         auth.NewSecret()[:24],
		SecretHash: auth.HashSecret(secret),
		Hostname:   hostname,
		IP:         remoteIP(r),
		Registered: s.now(),
	}
	err := s.cfg.Store.Register(r.Context(), key, srv)
	switch {
	case errors.Is(err, store.ErrInvalidKey):
		s.wrongKey(r)
		return agentError(http.StatusBadRequest, apitype.CodeInvalidKey, err)
	case errors.Is(err, store.ErrLimitReached):
		return agentError(http.StatusBadRequest, apitype.CodeLimitReached, err)
	case errors.Is(err, store.ErrIPNotAllowed):
		return agentError(http.StatusBadRequest, apitype.CodeIPNotAllowed, err)
	case err != nil:
		return err
	}
	s.auditChange(r, "agent:"+srv.ID, "server.register", srv.ID, fmt.Sprintf("hostname=%s ip=%s key=%s", hostname, srv.IP, store.MaskKey(key)),
		nil, ServerAudit(srv))
	return writeJSON(w, http.StatusOK, apitype.Registered{ServerID: srv.ID, ServerSecret: secret})
}

func (s *Server) unregister(w http.ResponseWriter, r *http.Request) error {
	c := authnOf(r).caller
	if c.key == nil {
		return agentError(http.StatusBadRequest, apitype.CodeNotRegistered, nil)
	}
	if err := s.cfg.Store.DeleteServer(r.Context(), c.server.ID); err != nil {
		return err
	}
	s.auditChange(r, "agent:"+c.server.ID, "server.unregister", c.server.ID, "", ServerAudit(c.server), nil)
	return writeJSON(w, http.StatusOK, apitype.OK)
}

// index answers a server with the signed index for its kernel.
func (s *Server) index(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	buildID := r.PathValue("build_id")
	if !apitype.BuildIDRE.MatchString(buildID) {
		return agentError(http.StatusBadRequest, apitype.CodeBadBuildID, nil)
	}
	c, err := s.agentAuth(ctx, r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	req := resolve.Request{Prefix: q.Get(apitype.IndexPrefixArg), Sticky: q.Get(apitype.IndexStickyArg), Now: s.now()}
	if req.Sticky == "KEY" {
		req.Sticky = ""
		if c.key != nil {
			req.Sticky = c.key.Sticky
		}
	}
	_, testPrefix, err := resolve.PrefixDelay(req.Prefix)
	if err != nil {
		return &httpError{code: http.StatusBadRequest, msg: err.Error()}
	}
	feed, err := s.cfg.Store.Feed(ctx, c.feed)
	if err != nil {
		return fmt.Errorf("feed %s: %w", c.feed, err)
	}
	levels, err := s.cfg.Store.VisibleLevels(ctx, c.feed, buildID)
	if err != nil {
		return err
	}
	all, err := s.cfg.Store.Levels(ctx, buildID)
	if err != nil {
		return err
	}
	if testPrefix {
		// PREFIX=test admits the test channel's levels too.
		for _, l := range all {
			if l.Channel == apitype.ChannelTest {
				levels = append(levels, l)
			}
		}
	}
	picked, err := resolve.Pick(levels, feed, req)
	if err != nil {
		return &httpError{code: http.StatusBadRequest, msg: err.Error()}
	}
	version, err := s.cfg.Store.Version(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	idx := &index.Index{
		Type:     "kcare-index",
		Version:  version,
		Issued:   now,
		Expires:  now.Add(s.cfg.IndexTTL),
		ServerID: c.server.ID,
		BuildID:  buildID,
		Feed:     c.feed,
		// The question as the agent asked it, which it checks.
		Request: &index.Request{BuildID: buildID, Prefix: q.Get(apitype.IndexPrefixArg), Sticky: q.Get(apitype.IndexStickyArg)},
	}
	reported, err := s.reported(ctx, c)
	if err != nil {
		return err
	}
	if from := resolve.RollbackFrom(reported, buildID, picked); from > 0 {
		idx.Rollback = &index.Rollback{Level: picked.Level, From: from, ServerID: c.server.ID}
	}
	for _, l := range all {
		idx.KernelID = l.KernelID
		if l.Level > idx.Latest {
			idx.Latest = l.Level
		}
	}
	if picked != nil {
		idx.Level = &index.Level{
			Level:            picked.Level,
			Name:             manifestName(picked),
			Patchset:         picked.Patchset,
			Digest:           picked.Digest,
			Size:             picked.Size,
			URL:              apitype.BlobPath + picked.Digest,
			Signature:        string(picked.Signature),
			EffectiveRelease: picked.EffectiveRelease,
			CVEs:             toBundleCVEs(picked.CVEs),
			Released:         picked.Released,
		}
	}
	body, sig, err := index.Sign(idx, s.cfg.IndexKey)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(index.SignatureHeader, index.EncodeSignature(sig))
	_, err = w.Write(body)
	return err
}

// reported returns the server as its last check-in recorded it, for
// resolve.RollbackFrom: a registered server as it authenticated (by its
// secret), a server known by its IP license from the record its
// check-ins keep; nil when there is none.
func (s *Server) reported(ctx context.Context, c *caller) (*store.Server, error) {
	if c.server.SecretHash != nil {
		return c.server, nil
	}
	srv, err := s.cfg.Store.Server(ctx, c.server.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return srv, err
}

func manifestName(l *store.Level) string {
	var m struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(l.Manifest, &m) == nil && m.Name != "" {
		return m.Name
	}
	return fmt.Sprintf("%s-%d", l.Release, l.Level)
}

func toBundleCVEs(in []store.CVE) []bundle.CVE {
	out := make([]bundle.CVE, len(in))
	for i, c := range in {
		out[i] = bundle.CVE{ID: c.ID, Description: c.Description, URL: c.URL}
	}
	return out
}

// license tells a server what it is licensed by.
func (s *Server) license(w http.ResponseWriter, r *http.Request) error {
	c := authnOf(r).caller
	out := apitype.License{Type: apitype.LicenseIP, ServerID: c.server.ID, Feed: c.feed}
	if c.key != nil {
		// The caller's key was read without its server count; count now.
		if k, err := s.cfg.Store.Key(r.Context(), c.key.Key); err == nil {
			c.key = k
		}
		out.Type = apitype.LicenseKey
		out.Key = &apitype.KeyLicense{Key: c.key.Key, Limit: c.key.Limit, Servers: c.key.Servers, Note: c.key.Note, Sticky: c.key.Sticky}
	}
	return writeJSON(w, http.StatusOK, out)
}

// blob serves a bundle by digest: immutable, with ETag and Range.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) error {
	d := r.PathValue("digest")
	f, err := s.cfg.Blobs.Open(d)
	if errors.Is(err, blobs.ErrNotFound) {
		return agentError(http.StatusNotFound, apitype.CodeNotFound, nil)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if n := rangeCount(r.Header.Get("Range")); n > maxBlobRanges {
		// Many small ranges would cost more in part headers than the
		// bytes asked for: refuse rather than amplify.
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", fi.Size()))
		return errorf(http.StatusRequestedRangeNotSatisfiable, "at most %d ranges", maxBlobRanges)
	}
	w.Header().Set("ETag", `"sha256:`+d+`"`)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), f)
	return nil
}

// maxBlobRanges is the most ranges one blob request may ask for.
const maxBlobRanges = 4

// rangeCount is how many ranges a Range header asks for.
func rangeCount(h string) int {
	if h == "" {
		return 0
	}
	return strings.Count(h, ",") + 1
}

func (s *Server) portalKey(w http.ResponseWriter, r *http.Request) error {
	pub, err := s.cfg.IndexKey.PublicKey()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/pgp-keys")
	_, err = w.Write(pub)
	return err
}

// audit records an action, logging (not failing) when the log cannot be
// written.
func (s *Server) audit(r *http.Request, actor, action, object, detail string) {
	s.auditChange(r, actor, action, object, detail, nil, nil)
}

// auditChange records a change with the object as it was before and is
// after, each as JSON; nil (a creation's before, a deletion's after) is "".
func (s *Server) auditChange(r *http.Request, actor, action, object, detail string, before, after any) {
	e := store.AuditEntry{At: s.now(), Actor: actor, Action: action, Object: store.AuditObject(action, object), Detail: detail,
		IP: remoteIP(r), Before: AuditJSON(before), After: AuditJSON(after)}
	if err := s.cfg.Store.Audit(r.Context(), e); err != nil {
		s.cfg.Log.Error("audit", "action", action, "error", err)
	}
}

// AuditJSON is v as an audit entry's before or after: JSON, or "" for nil.
func AuditJSON(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%q", err.Error())
	}
	return string(b)
}

// ServerAudit is a server as the audit log shows it: no secret, its key
// masked.
func ServerAudit(v *store.Server) map[string]any {
	return map[string]any{"id": v.ID, "hostname": v.Hostname, "ip": v.IP, "key": store.MaskKey(v.Key),
		"kernel": v.Release, "level": v.Level, "registered": v.Registered}
}
