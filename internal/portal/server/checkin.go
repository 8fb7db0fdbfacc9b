package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kcare/kcare/internal/portal/store"
)

// CheckIn is what an agent sends after every run.
type CheckIn struct {
	Hostname         string  `json:"hostname"`
	Release          string  `json:"release"`
	BuildID          string  `json:"build_id"`
	KernelID         string  `json:"kernel_id"`
	Level            int     `json:"level"`
	EffectiveRelease string  `json:"effective_release"`
	Result           string  `json:"result"`
	AgentVersion     string  `json:"agent_version"`
	Tags             *string `json:"tags,omitempty"`
}

// Bounds of a check-in's fields.
const (
	maxLevel     = 1 << 20
	maxResultLen = 1000 // bytes of a result kept; a longer one is cut at a character
	maxTagsLen   = 500
)

var (
	// releaseRE is a kernel release as uname -r prints it (at most 64
	// characters, the kernel's own bound).
	releaseRE = regexp.MustCompile(`^[A-Za-z0-9._+~-]{1,64}$`)
	// agentVersionRE is kcarectl's version.
	agentVersionRE = regexp.MustCompile(`^[A-Za-z0-9._+~-]{1,64}$`)
)

// ErrBadField is a field of a registration or a check-in that breaks its
// rule; the error's text names the field ("bad-hostname").
var ErrBadField = errors.New("bad field")

type fieldError struct{ field string }

func (e *fieldError) Error() string        { return "bad-" + e.field }
func (e *fieldError) Is(target error) bool { return target == ErrBadField }

// validHostname reports whether registration and check-in accept h as a
// server's hostname: empty, or up to 253 letters, digits, dots, hyphens
// and underscores.
func validHostname(h string) bool { return h == "" || hostnameRE.MatchString(h) }

// validate checks every field of a check-in, in the order they are
// listed, and cuts a long result to maxResultLen.
func (c *CheckIn) validate() error {
	ok := func(v string, re *regexp.Regexp) bool { return v == "" || re.MatchString(v) }
	switch {
	case !validHostname(c.Hostname):
		return &fieldError{"hostname"}
	case !ok(c.Release, releaseRE):
		return &fieldError{"release"}
	case !ok(c.BuildID, buildIDRE):
		return &fieldError{"build-id"}
	case !ok(c.KernelID, kernelIDRE):
		return &fieldError{"kernel-id"}
	case c.Level < 0 || c.Level > maxLevel:
		return &fieldError{"level"}
	case !ok(c.EffectiveRelease, releaseRE):
		return &fieldError{"effective-release"}
	case !freeText(c.Result, "\n\t"):
		return &fieldError{"result"}
	case !ok(c.AgentVersion, agentVersionRE):
		return &fieldError{"agent-version"}
	case c.Tags != nil && (len(*c.Tags) > maxTagsLen || !freeText(*c.Tags, "") || strings.ContainsAny(*c.Tags, `"'\`)):
		return &fieldError{"tags"}
	}
	if len(c.Result) > maxResultLen {
		cut := maxResultLen
		for cut > 0 && !utf8.RuneStart(c.Result[cut]) {
			cut--
		}
		c.Result = c.Result[:cut]
	}
	return nil
}

// freeText reports whether s is UTF-8 without control characters, but for
// those in allowed.
func freeText(s, allowed string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if (unicode.IsControl(r) || r == '\u2028' || r == '\u2029') && !strings.ContainsRune(allowed, r) {
			return false
		}
	}
	return true
}

// decodeCheckIn reads a check-in: exactly one JSON object, with only the
// fields CheckIn has, each valid. A bad field is an ErrBadField naming it.
func decodeCheckIn(r io.Reader) (*CheckIn, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var in CheckIn
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("check-in: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("check-in: more than one JSON value")
	}
	if err := in.validate(); err != nil {
		return nil, err
	}
	return &in, nil
}

func (s *Server) checkin(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c := authnOf(r).caller
	in, err := decodeCheckIn(r.Body) // bounded by the route's body limit
	var fe *fieldError
	switch {
	case errors.As(err, &fe):
		return &httpError{code: http.StatusBadRequest, msg: fe.Error(), err: err}
	case err != nil:
		return &httpError{code: http.StatusBadRequest, msg: "bad-request", err: err}
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
	return writeJSON(w, http.StatusOK, map[string]string{"result": "ok"})
}
