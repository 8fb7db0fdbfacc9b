// Package index is the signed per-server index a portal serves and an agent
// verifies: which patch level a kernel may have, with its bundle's digest,
// size and publisher signature.
//
// The portal marshals an Index and signs the exact bytes with its online key
// (Sign). The agent checks those bytes before it parses them, and then
// checks what they say, in a fixed order that fails closed (Verifier.Verify),
// after The Update Framework: a stranger's or tampered index, a replayed
// older one (rollback), a stale one held back (freeze) and one for another
// kernel (mix-and-match) are each refused with their own error.
//
// An index states the question it answers (Request: the build-id, PREFIX
// and sticky date the agent sent), so that an agent refuses an answer to a
// question it did not ask, and it carries a rollback order (Rollback) when
// the portal wants a server back at a lower level than the one it
// reported: without one an agent never moves down.
package index

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/charclass"
	"github.com/kcare/kcare/internal/failure"
	"github.com/kcare/kcare/internal/trust"
)

// Type is the value of every index's type field.
const Type = "kcare-index"

// DefaultMaxSize is the largest index body Verify reads when the Verifier
// sets no MaxSize. An index names one level; a few kilobytes is typical.
const DefaultMaxSize = 1 << 20

// MaxClockSkew is how far in the future an index's issue time may be, by
// the agent's clock, before Verify refuses it (ErrFuture).
const MaxClockSkew = 5 * time.Minute

// Refusals from Verify and LimitedReader, to be told apart with errors.Is.
// Signature failures are trust's errors (trust.ErrUnsigned,
// trust.ErrUnknownKey, trust.ErrBadSignature, ...), passed through.
var (
	// ErrRollback means the index's version is older than the last one
	// accepted: a replayed older index.
	ErrRollback = errors.New("rollback refused")
	// ErrExpired means the index is past its expiry time: a stale index
	// held back (freeze), or a portal that stopped re-signing.
	ErrExpired = errors.New("index expired")
	// ErrWrongKernel means the index was issued for another kernel build.
	ErrWrongKernel = errors.New("index is for another kernel")
	// ErrFuture means the index was issued further in the future than the
	// clocks may disagree.
	ErrFuture = errors.New("index issued in the future")
	// ErrMalformed means the signed body is not a valid index.
	ErrMalformed = errors.New("malformed index")
	// ErrTooLarge means an index body, or a download through LimitedReader,
	// is over its size limit.
	ErrTooLarge = errors.New("too large")
	// ErrWrongRequest means the index answers another question than the
	// one the agent asked: other request inputs, none stated, or a rollback
	// order for another server. A man in the middle rewrote the request or
	// replayed another server's answer.
	ErrWrongRequest = failure.New(failure.Refused, "index answers another request")
)

// Index is what the portal says one server's kernel may apply. Fields are
// only ever added; Verify ignores fields it does not know.
type Index struct {
	Type     string    `json:"type"`    // always Type
	Version  int64     `json:"version"` // the portal's monotonic data version; agents refuse a lower one (rollback)
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"` // agents refuse an expired index (freeze)
	ServerID string    `json:"server_id,omitempty"`
	BuildID  string    `json:"build_id"` // GNU build-id of the kernel this index is for (mix-and-match)
	KernelID string    `json:"kernel_id,omitempty"`
	Feed     string    `json:"feed,omitempty"`
	Level    *Level    `json:"level"`  // the newest level allowed, nil when there is none
	Latest   int       `json:"latest"` // the newest level published for this kernel at all, ignoring feed, prefix and sticky date; for --check and --status messages
	// Request is the question this index answers, as the agent asked it.
	// Agents refuse an index that states none, or other inputs than their
	// own (ErrWrongRequest).
	Request *Request `json:"request,omitempty"`
	// Rollback, when set, orders the server it names back to Level, below
	// the level it reported. Agents never apply a level lower than the one
	// in effect without it (unless their own PREFIX or STICKY_PATCH asked).
	Rollback *Rollback `json:"rollback,omitempty"`
	// Window, when set, is the server's maintenance window: the one it
	// is in, or the next. An agent updating by itself (kcarectl
	// --auto-update) applies a new level only from Start until End; by
	// hand it applies at once. nil: at any time.
	Window *Window `json:"window,omitempty"`
}

// Window is a maintenance window, as instants: the portal evaluates the
// window in its time zone, so that the agent needs none.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Open reports whether t is inside w.
func (w *Window) Open(t time.Time) bool { return !t.Before(w.Start) && t.Before(w.End) }

// Request is the inputs an index answers: what the agent sent, as it sent
// them. It names no server, so that servers asking the same question may
// share one signed answer.
type Request struct {
	BuildID string `json:"build_id"` // the kernel's GNU build-id: the index's BuildID
	Prefix  string `json:"prefix"`   // the prefix query parameter: "", test, 12h, 24h or 48h
	Sticky  string `json:"sticky"`   // the sticky query parameter: "", KEY or a date, as sent
	// Delay and Patchset are KernelCare's UPDATE_DELAY ("24h", "2d") and
	// STICKY_PATCHSET (a patchset name), as sent; an agent that sends
	// neither asks what agents before them asked.
	Delay    string `json:"delay,omitempty"`
	Patchset string `json:"patchset,omitempty"`
}

// Rollback is the portal's order to one server to go back to a lower
// level: an operator's undeploy, a withdrawn level, a sticky date moved
// back, a move to a feed at a lower level. It is bound to the server
// because the portal decides it from that server's reported level.
type Rollback struct {
	Level    int    `json:"level"`     // the level to return to: the index's Level
	From     int    `json:"from"`      // the level the server last reported, above Level
	ServerID string `json:"server_id"` // the server ordered back
	// Reason says why, for the agent's log: "the rollout of
	// K20261127_01 in feed main halted: 1 new kernel warning". It may be
	// empty; agents ignore it.
	Reason string `json:"reason,omitempty"`
}

// IPServerPrefix starts the server id the portal gives a server known only
// by its IP license; such a server has no id of its own to check an order
// against.
const IPServerPrefix = "ip-"

// Level is one cumulative patch level and where to fetch its bundle.
type Level struct {
	Level            int          `json:"level"`
	Name             string       `json:"name"`
	Patchset         string       `json:"patchset"`
	Digest           string       `json:"digest"` // sha256 hex of the .kcp
	Size             int64        `json:"size"`
	URL              string       `json:"url"`       // BlobPath(Digest), relative to the portal
	Signature        string       `json:"signature"` // the publisher's armored detached signature over the .kcp
	EffectiveRelease string       `json:"effective_release"`
	CVEs             []bundle.CVE `json:"cves"`
	Released         time.Time    `json:"released"`
	// Urgent: its patchset is urgent, and an agent that polls between
	// its runs fetches it at once.
	Urgent bool `json:"urgent,omitempty"`
}

// BlobPath returns the portal path a bundle with the given sha256 hex digest
// is served at.
func BlobPath(digest string) string {
	return "/blobs/sha256/" + digest
}

// Sign marshals idx and signs the exact bytes with the portal's key. It
// fills in Type when empty, writes times in UTC and an empty CVE list as
// [], and refuses an index that Verify would refuse as malformed. idx is
// not changed.
func Sign(idx *Index, s *trust.Signer) (body, sig []byte, err error) {
	if idx == nil {
		return nil, nil, errors.New("sign index: no index")
	}
	if s == nil {
		return nil, nil, errors.New("sign index: no signing key")
	}
	body, err = marshal(idx)
	if err != nil {
		return nil, nil, fmt.Errorf("sign index: %w", err)
	}
	sig, err = s.Sign(bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("sign index: %w", err)
	}
	return body, sig, nil
}

// marshal returns the body Sign signs: idx as indented JSON with a final
// newline, normalised as Sign describes, after the checks Verify makes of
// its fields.
func marshal(idx *Index) ([]byte, error) {
	c := *idx
	if c.Type == "" {
		c.Type = Type
	}
	c.Issued = c.Issued.UTC()
	c.Expires = c.Expires.UTC()
	if idx.Window != nil {
		c.Window = &Window{Start: idx.Window.Start.UTC(), End: idx.Window.End.UTC()}
	}
	if idx.Level != nil {
		l := *idx.Level
		l.Released = l.Released.UTC()
		if l.CVEs == nil {
			l.CVEs = []bundle.CVE{}
		}
		c.Level = &l
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	body, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal index: %w", err)
	}
	return append(body, '\n'), nil
}

// parse parses and validates an index body. It checks neither the
// signature, nor the kernel, nor the times against a clock; only Verify
// calls it, after the signature.
func parse(body []byte) (*Index, error) {
	var idx Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := idx.validate(); err != nil {
		return nil, err
	}
	return &idx, nil
}

var (
	buildID   = charclass.New("0-9a-f", 16, 128) // as a bundle's kernel build-id
	sha1Hex   = charclass.New("0-9a-f", 40, 40)
	sha256Hex = charclass.New("0-9a-f", 64, 64)
	cveID     = regexp.MustCompile(`^[A-Z][A-Z0-9]*-[0-9]{4}-[0-9]{1,10}$`) // as a bundle's manifest
)

// maxText bounds the free-text fields an agent prints.
const maxText = 200

// maxInput bounds a stated request input: a PREFIX or a sticky date.
const maxInput = 16

// armoredSignature starts the publisher's signature.
const armoredSignature = "-----BEGIN PGP SIGNATURE-----"

// validate checks every field of an index, without a clock.
func (idx *Index) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	switch {
	case idx.Type != Type:
		return bad("type %q, want %q", idx.Type, Type)
	case idx.Version < 0:
		return bad("version %d is negative", idx.Version)
	case idx.Issued.IsZero():
		return bad("no issue time")
	case idx.Expires.IsZero():
		return bad("no expiry time")
	case !idx.Expires.After(idx.Issued):
		return bad("expires at %s, not after it was issued at %s", stamp(idx.Expires), stamp(idx.Issued))
	case !printable(idx.ServerID):
		return bad("bad server id %q", idx.ServerID)
	case !buildID.MatchString(idx.BuildID):
		return bad("bad build-id %q", idx.BuildID)
	case idx.KernelID != "" && !sha1Hex.MatchString(idx.KernelID):
		return bad("bad kernel id %q", idx.KernelID)
	case !printable(idx.Feed):
		return bad("bad feed %q", idx.Feed)
	case idx.Latest < 0:
		return bad("latest level %d is negative", idx.Latest)
	}
	if r := idx.Request; r != nil {
		switch {
		case r.BuildID != idx.BuildID:
			return bad("request build-id %q is not the index's %q", r.BuildID, idx.BuildID)
		case !printable(r.Prefix) || len(r.Prefix) > maxInput:
			return bad("bad request prefix %q", r.Prefix)
		case !printable(r.Sticky) || len(r.Sticky) > maxInput:
			return bad("bad request sticky date %q", r.Sticky)
		case !printable(r.Delay) || len(r.Delay) > maxInput:
			return bad("bad request delay %q", r.Delay)
		case !printable(r.Patchset) || len(r.Patchset) > maxInput:
			return bad("bad request patchset %q", r.Patchset)
		}
	}
	if r := idx.Rollback; r != nil {
		switch {
		case idx.Level == nil:
			return bad("rollback order with no level to return to")
		case r.Level != idx.Level.Level:
			return bad("rollback order to level %d, but the index names level %d", r.Level, idx.Level.Level)
		case r.From <= r.Level:
			return bad("rollback order from level %d to level %d is not a rollback", r.From, r.Level)
		case r.ServerID == "" || !printable(r.ServerID):
			return bad("rollback order for bad server id %q", r.ServerID)
		case !printable(r.Reason):
			return bad("rollback order with a bad reason %q", r.Reason)
		}
	}
	if w := idx.Window; w != nil && (w.Start.IsZero() || !w.End.After(w.Start)) {
		return bad("maintenance window from %s to %s is empty", stamp(w.Start), stamp(w.End))
	}
	if idx.Level == nil {
		return nil
	}
	l := idx.Level
	switch {
	case l.Level < 1:
		return bad("level %d, want 1 or more", l.Level)
	case l.Level > idx.Latest:
		return bad("level %d is newer than the latest published, %d", l.Level, idx.Latest)
	case l.Name == "" || !printable(l.Name) || strings.Contains(l.Name, "/"):
		return bad("level %d: bad name %q", l.Level, l.Name)
	case !printable(l.Patchset):
		return bad("level %d: bad patchset %q", l.Level, l.Patchset)
	case !sha256Hex.MatchString(l.Digest):
		return bad("level %d: digest %q is not 64 lower-case hex digits", l.Level, l.Digest)
	case l.Size <= 0 || l.Size > bundle.MaxBundleSize:
		return bad("level %d: size %d is outside 1 to %d bytes", l.Level, l.Size, bundle.MaxBundleSize)
	case l.URL != BlobPath(l.Digest):
		return bad("level %d: url %q, want %q", l.Level, l.URL, BlobPath(l.Digest))
	case !strings.HasPrefix(l.Signature, armoredSignature) || len(l.Signature) > trust.MaxSignatureSize:
		return bad("level %d: signature is not an armored OpenPGP signature", l.Level)
	case !printable(l.EffectiveRelease) || strings.ContainsAny(l.EffectiveRelease, " /"):
		return bad("level %d: bad effective release %q", l.Level, l.EffectiveRelease)
	case l.Released.IsZero():
		return bad("level %d: no release time", l.Level)
	}
	for _, c := range l.CVEs {
		switch {
		case !cveID.MatchString(c.ID):
			return bad("level %d: bad CVE id %q", l.Level, c.ID)
		case !noControl(c.Description) || !noControl(c.URL):
			return bad("level %d: %s: control character in description or url", l.Level, c.ID)
		}
	}
	return nil
}

// printable reports whether s is short text with no control characters,
// safe to print on a terminal.
func printable(s string) bool {
	if len(s) > maxText {
		return false
	}
	for _, r := range s {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// noControl reports whether s is valid text without control characters.
func noControl(s string) bool {
	for _, r := range s {
		if r == unicode.ReplacementChar || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func stamp(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
