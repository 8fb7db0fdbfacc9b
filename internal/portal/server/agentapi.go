package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/httperr"
	"github.com/kcare/kcare/internal/portal/resolve"
	"github.com/kcare/kcare/internal/portal/store"
)

// register is ePortal's POST /admin/api/register (form key, hostname,
// urlencoded or multipart as curl -F sends it). The activation key is the
// credential.
func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	form, err := bodyValues(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return agentError(http.StatusBadRequest, apitype.CodeBadRequest, err)
	}
	key := strings.TrimSpace(form.Get(apitype.RegisterKeyArg))
	hostname := strings.TrimSpace(form.Get(apitype.RegisterHostArg))
	id, secret, err := s.core.Register(r.Context(), key, hostname, httperr.RemoteIP(r))
	switch {
	case errors.Is(err, store.ErrInvalidKey):
		if key != "" {
			s.wrongKey(r)
		}
		return agentError(http.StatusBadRequest, apitype.CodeInvalidKey, err)
	case errors.Is(err, apitype.ErrBadField):
		return agentError(http.StatusBadRequest, apitype.CodeBadHostname, err)
	case errors.Is(err, store.ErrLimitReached):
		return agentError(http.StatusBadRequest, apitype.CodeLimitReached, err)
	case errors.Is(err, store.ErrIPNotAllowed):
		return agentError(http.StatusBadRequest, apitype.CodeIPNotAllowed, err)
	case err != nil:
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.Registered{ServerID: id, ServerSecret: secret})
}

func (s *Server) unregister(w http.ResponseWriter, r *http.Request) error {
	err := s.core.Unregister(r.Context(), authnOf(r).caller, httperr.RemoteIP(r))
	if errors.Is(err, core.ErrNotRegistered) {
		return agentError(http.StatusBadRequest, apitype.CodeNotRegistered, err)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apitype.OK)
}

// index answers a server with the signed index for its kernel.
func (s *Server) index(w http.ResponseWriter, r *http.Request) error {
	a, err := s.core.Index(r.Context(), authnOf(r).caller, indexRequest(r))
	if err := indexError(err); err != nil {
		return err
	}
	return writeIndex(w, r, a)
}

// indexRequest is the index question a request's query asks (its
// build-id, if any, from the path).
func indexRequest(r *http.Request) core.IndexRequest {
	q := r.URL.Query()
	return core.IndexRequest{BuildID: r.PathValue("build_id"), Prefix: q.Get(apitype.IndexPrefixArg), Sticky: q.Get(apitype.IndexStickyArg),
		Delay: q.Get(apitype.IndexDelayArg), Patchset: q.Get(apitype.IndexPatchArg)}
}

// indexError is the answer to an index question the core refused.
func indexError(err error) error {
	switch {
	case errors.Is(err, apitype.ErrBadField):
		return agentError(http.StatusBadRequest, apitype.CodeBadBuildID, err)
	case errors.Is(err, resolve.ErrBadPrefix), errors.Is(err, resolve.ErrBadSticky), errors.Is(err, resolve.ErrBadDelay), errors.Is(err, resolve.ErrBadPatchset):
		return httperr.Wrap(http.StatusBadRequest, err.Error(), err)
	}
	return err
}

// writeIndex answers with a signed index: the exact body, its signature
// in index.SignatureHeader, and its entity tag. A request whose
// If-None-Match names that tag gets 304 and no body: the agent's own copy
// is the answer, and the agent checks it again, expiry included, so a
// 304 never makes an index live longer than it was signed for.
func writeIndex(w http.ResponseWriter, r *http.Request, a *core.IndexAnswer) error {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("ETag", a.ETag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == a.ETag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json")
	h.Set(index.SignatureHeader, a.SigHeader)
	_, err := w.Write(a.Body)
	return err
}

// run is an agent's run in one round trip: its check-in, answered with
// the signed index for the kernel it reports.
func (s *Server) run(w http.ResponseWriter, r *http.Request) error {
	in, err := decodeCheckIn(r.Body) // bounded by the route's body limit
	if err := checkInError(err); err != nil {
		return err
	}
	a, err := s.core.Run(r.Context(), authnOf(r).caller, in, indexRequest(r), httperr.RemoteIP(r))
	if err := indexError(err); err != nil {
		return err
	}
	return writeIndex(w, r, a)
}

// license tells a server what it is licensed by.
func (s *Server) license(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.core.License(r.Context(), authnOf(r).caller))
}

// blob serves a bundle by digest: immutable, with ETag and Range. A
// plain GET of the whole bundle, what every agent sends, is answered
// here: headers, then the file with sendfile(2) (see paced.ReadFrom),
// without reading any of it into the process. Ranges, conditional
// requests and HEAD go through http.ServeContent.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) error {
	d := r.PathValue("digest")
	f, err := s.core.OpenBlob(d)
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
	h := w.Header()
	h.Set("ETag", `"sha256:`+d+`"`)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Content-Type", "application/octet-stream")
	if r.Method != http.MethodGet || r.Header.Get("Range") != "" || r.Header.Get("If-None-Match") != "" ||
		r.Header.Get("If-Modified-Since") != "" || r.Header.Get("If-Range") != "" {
		http.ServeContent(w, r, "", fi.ModTime(), f)
		return nil
	}
	h.Set("Accept-Ranges", "bytes")
	h.Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	// Headers out first, so that net/http reads none of the file to
	// sniff its type and hands all of it to sendfile. An error from here
	// on is a client gone mid-way: nothing more to answer.
	if err := http.NewResponseController(w).Flush(); err != nil {
		return nil
	}
	io.Copy(w, io.LimitReader(f, fi.Size()))
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
	pub, err := s.core.IndexPublicKey()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/pgp-keys")
	_, err = w.Write(pub)
	return err
}
