package index

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/trust"
)

// A Verifier checks indexes for one kernel and remembers the last version
// accepted. It is not safe for concurrent use.
type Verifier struct {
	// Keys are the keys an index may be signed with: the portal's, and a
	// mirror's.
	Keys *trust.Keyring
	// BuildID is the running kernel's GNU build-id, hex.
	BuildID string
	// Prefix and Sticky are the prefix and sticky inputs the agent sent
	// with its request, as sent ("" when it sent none). An index must
	// state exactly these, and BuildID, as its request.
	Prefix, Sticky string
	// Delay and Patchset are the delay and patchset inputs it sent
	// (UPDATE_DELAY, STICKY_PATCHSET), "" for none.
	Delay, Patchset string
	// ServerID is the agent's registered server id; "" for a server
	// known only by its IP license. A rollback order must name it (or,
	// with no id, a server id starting with IPServerPrefix).
	ServerID string
	// LastVersion is the version of the last index accepted, 0 if none.
	// The agent loads it from its state, and saves it after Verify.
	LastVersion int64
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// MaxSize is the largest body read; 0 means DefaultMaxSize.
	MaxSize int64
}

// Verify checks an index body and its detached signature, and returns the
// index. The checks run in this fixed order and the first failure is
// returned; nothing is parsed before the signature has been checked:
//
//  1. the body is no larger than MaxSize (ErrTooLarge);
//  2. sig is a good signature over body by a key in Keys (trust's errors:
//     trust.ErrUnsigned, trust.ErrUnknownKey, trust.ErrBadSignature, ...);
//  3. the body is a well-formed index (ErrMalformed);
//  4. it is for BuildID (ErrWrongKernel);
//  5. it states the request the agent made, BuildID, Prefix and Sticky,
//     and a rollback order in it names this server (ErrWrongRequest);
//  6. it has not expired (ErrExpired);
//  7. it was not issued more than MaxClockSkew in the future (ErrFuture);
//  8. its version is not older than LastVersion (ErrRollback). The same
//     version is accepted: the same index may be fetched twice.
//
// On success LastVersion is set to the index's version.
func (v *Verifier) Verify(body, sig []byte) (*Index, error) {
	limit := v.MaxSize
	if limit <= 0 {
		limit = DefaultMaxSize
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("index body: %w: %d bytes, limit %d", ErrTooLarge, len(body), limit)
	}
	if _, err := v.Keys.Verify(bytes.NewReader(body), sig); err != nil {
		var fe *trust.FutureError
		if errors.As(err, &fe) {
			// Most likely this host's clock is behind: say so in the
			// index's terms, not as a forgery.
			return nil, fmt.Errorf("%w: signed at %s, %s ahead of this host's clock (%s), more than the %s allowed; %s until it expires: check this host's clock",
				ErrFuture, stamp(fe.Made), span(fe.Made.Sub(fe.Now)), stamp(fe.Now), trust.ClockSkew, goodFrom(""))
		}
		return nil, fmt.Errorf("index signature: %w", err)
	}
	idx, err := parse(body)
	if err != nil {
		return nil, err
	}
	if idx.BuildID != v.BuildID {
		return nil, fmt.Errorf("%w: issued for build-id %s, this kernel is %s", ErrWrongKernel, idx.BuildID, v.BuildID)
	}
	if err := v.checkRequest(idx); err != nil {
		return nil, err
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if !now.Before(idx.Expires) {
		return nil, fmt.Errorf("%w at %s, %s ago by this host's clock (%s); %s until it expires: check this host's clock",
			ErrExpired, stamp(idx.Expires), span(now.Sub(idx.Expires)), stamp(now), goodFrom(stamp(idx.Issued)))
	}
	if ahead := idx.Issued.Sub(now); ahead > MaxClockSkew {
		return nil, fmt.Errorf("%w: at %s, %s ahead of this host's clock (%s), more than the %s allowed; %s until it expires (%s): check this host's clock",
			ErrFuture, stamp(idx.Issued), span(ahead), stamp(now), MaxClockSkew, goodFrom(""), stamp(idx.Expires))
	}
	if idx.Version < v.LastVersion {
		return nil, fmt.Errorf("index version %d is older than the last accepted %d: %w", idx.Version, v.LastVersion, ErrRollback)
	}
	v.LastVersion = idx.Version
	return idx, nil
}

// checkRequest refuses an index that answers another question than the
// one asked: one that states no request or another one, or that orders
// another server back.
func (v *Verifier) checkRequest(idx *Index) error {
	want := Request{BuildID: v.BuildID, Prefix: v.Prefix, Sticky: v.Sticky, Delay: v.Delay, Patchset: v.Patchset}
	switch {
	case idx.Request == nil:
		return fmt.Errorf("%w: the index states no request (build-id, prefix, sticky); it was signed by a portal that does not bind them", ErrWrongRequest)
	case *idx.Request != want:
		return fmt.Errorf("%w: the index answers %s, this agent asked %s", ErrWrongRequest, idx.Request, want)
	}
	if r := idx.Rollback; r != nil && !v.orderFor(r.ServerID) {
		this := v.ServerID
		if this == "" {
			this = "none (IP license)"
		}
		return fmt.Errorf("%w: its rollback order is for server %s, this server is %s", ErrWrongRequest, r.ServerID, this)
	}
	return nil
}

// orderFor reports whether a rollback order naming id is for this server.
func (v *Verifier) orderFor(id string) bool {
	if v.ServerID == "" {
		return strings.HasPrefix(id, IPServerPrefix)
	}
	return id == v.ServerID
}

// String returns r as a message names it: build-id, prefix and sticky.
func (r Request) String() string {
	q := func(s string) string {
		if s == "" {
			return "none"
		}
		return strconv.Quote(s)
	}
	s := fmt.Sprintf("build-id %s, prefix %s, sticky %s", r.BuildID, q(r.Prefix), q(r.Sticky))
	if r.Delay != "" || r.Patchset != "" {
		s += fmt.Sprintf(", delay %s, patchset %s", q(r.Delay), q(r.Patchset))
	}
	return s
}

// goodFrom is the start of the sentence that states an index's time
// window, with its issue time when known.
func goodFrom(issued string) string {
	if issued != "" {
		issued += ", "
	}
	return fmt.Sprintf("an index is good from its issue time (%sless %s of clock skew)", issued, MaxClockSkew)
}

// span is a duration as a message gives it: to the second, or in days
// from two days up.
func span(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int64(d.Round(24*time.Hour)/(24*time.Hour)))
	}
	return d.Round(time.Second).String()
}
