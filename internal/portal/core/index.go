package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/portal/resolve"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/window"
)

// ErrNoIndexKey is an index asked of a Core that has no key to sign it.
var ErrNoIndexKey = errors.New("the portal has no index signing key")

// IndexRequest is the question an agent asks for its index.
type IndexRequest struct {
	BuildID string
	Prefix  string // PREFIX: "", test, 12h, 24h, 48h
	Sticky  string // STICKY_PATCH as sent, or "KEY" for the key's
	// Delay and Patchset are KernelCare's UPDATE_DELAY and
	// STICKY_PATCHSET, as sent.
	Delay, Patchset string
}

// IndexAnswer is a signed index as the portal serves it: the exact body,
// the portal's detached signature over it (SigHeader: as the
// index.SignatureHeader carries it), and an entity tag naming the body,
// for conditional requests.
type IndexAnswer struct {
	Body, Sig []byte
	SigHeader string
	ETag      string
}

// answer is e as an IndexAnswer.
func (e *signedIndex) answer() *IndexAnswer {
	return &IndexAnswer{Body: e.body, Sig: e.sig, SigHeader: e.sigHeader, ETag: e.etag}
}

// check refuses a question the portal cannot answer: a bad build-id
// (apitype.ErrBadField), PREFIX (resolve.ErrBadPrefix), sticky date
// (resolve.ErrBadSticky), UPDATE_DELAY (resolve.ErrBadDelay) or
// STICKY_PATCHSET (resolve.ErrBadPatchset). It returns the patchsets'
// order for a STICKY_PATCHSET.
func (c *Core) check(ctx context.Context, q IndexRequest) (map[string]int, error) {
	if !apitype.BuildIDRE.MatchString(q.BuildID) {
		return nil, &apitype.FieldError{Field: "build-id"}
	}
	if _, _, err := resolve.PrefixDelay(q.Prefix); err != nil {
		return nil, err
	}
	if q.Sticky != "" && q.Sticky != "KEY" {
		if _, err := config.StickyEnd(q.Sticky); err != nil {
			return nil, fmt.Errorf("%w %q: %v", resolve.ErrBadSticky, q.Sticky, err)
		}
	}
	if q.Delay != "" {
		if _, err := config.ParseDelay(q.Delay); err != nil {
			return nil, fmt.Errorf("%w: %v", resolve.ErrBadDelay, err)
		}
	}
	if q.Patchset == "" {
		return nil, nil
	}
	all, err := c.st.Patchsets(ctx)
	if err != nil {
		return nil, err
	}
	order := make(map[string]int, len(all))
	for i, p := range all {
		order[p.Name] = i
	}
	if _, ok := order[q.Patchset]; !ok {
		return nil, fmt.Errorf("%w %q", resolve.ErrBadPatchset, q.Patchset)
	}
	return order, nil
}

// Run is an agent's run in one round trip: it records the check-in in,
// from ip, as CheckIn does (stored before Run returns), and answers the
// question q for the kernel the check-in reports (q.BuildID is in's), as
// Index does, with a rollback order decided from the level in reports.
// A bad question is refused before anything is recorded.
func (c *Core) Run(ctx context.Context, cl *Caller, in *apitype.CheckIn, q IndexRequest, ip string) (*IndexAnswer, error) {
	if c.cfg.IndexKey == nil {
		return nil, ErrNoIndexKey
	}
	q.BuildID = in.BuildID
	order, err := c.check(ctx, q)
	if err != nil {
		return nil, err
	}
	if err := c.CheckIn(ctx, cl, in, ip); err != nil {
		return nil, err
	}
	reported := *cl.Server
	reported.BuildID, reported.Level = in.BuildID, in.Level
	return c.index(ctx, cl, q, order, &reported)
}

// Index answers a server with the signed index for its kernel: the exact
// body and the portal's detached signature. A bad prefix or sticky date
// is resolve.ErrBadPrefix or ErrBadSticky.
func (c *Core) Index(ctx context.Context, cl *Caller, q IndexRequest) (*IndexAnswer, error) {
	if c.cfg.IndexKey == nil {
		return nil, ErrNoIndexKey
	}
	order, err := c.check(ctx, q)
	if err != nil {
		return nil, err
	}
	reported, err := c.reported(ctx, cl)
	if err != nil {
		return nil, err
	}
	return c.index(ctx, cl, q, order, reported)
}

// index answers q, checked (order: the patchsets' order for its
// STICKY_PATCHSET), for cl, with a rollback order when reported (the
// server as it last reported itself) is above the level the answer
// names. The answer for everyone who asks q comes from c.indexes; one
// with a rollback order is signed for cl alone.
func (c *Core) index(ctx context.Context, cl *Caller, q IndexRequest, order map[string]int, reported *store.Server) (*IndexAnswer, error) {
	resolved := q.Sticky
	if resolved == "KEY" {
		resolved = ""
		if cl.Key != nil {
			resolved = cl.Key.Sticky
		}
	}
	version := cl.Version
	if version == 0 {
		v, err := c.st.Version(ctx)
		if err != nil {
			return nil, err
		}
		version = v
	}
	now := c.Now()
	g, err := c.gates(ctx, version)
	if err != nil {
		return nil, err
	}
	// The answer is of the version the gates were read at: a gate means
	// the rollouts of that version.
	version = g.version
	gate, err := c.gate(ctx, g, cl.Feed, q.BuildID, cl.Server.ID, reported)
	if err != nil {
		return nil, err
	}
	win := g.windowFor(cl.Feed, cl.Key)
	k := indexKey{buildID: q.BuildID, feed: cl.Feed, prefix: q.Prefix, sticky: q.Sticky, resolved: resolved,
		delay: q.Delay, patchset: q.Patchset, version: version, gate: gate, window: win.String()}
	e := c.indexes.get(k, now, func(e *signedIndex) { e.err = c.signIndex(ctx, k, g, order, now, e) })
	if e.err != nil {
		return nil, e.err
	}
	if e.picked == 0 {
		return e.answer(), nil
	}
	from := resolve.RollbackFrom(reported, q.BuildID, &store.Level{Level: e.picked})
	if from == 0 {
		return e.answer(), nil
	}
	// An order for this server alone, signed now, never shared. It is
	// carried out at once, window or not.
	idx := e.idx
	idx.Issued, idx.Expires = now, now.Add(c.cfg.IndexTTL)
	idx.ServerID = cl.Server.ID
	idx.Window = nil
	idx.Rollback = &index.Rollback{Level: e.picked, From: from, ServerID: cl.Server.ID,
		Reason: g.rollbackReason(cl.Feed, q.BuildID, from)}
	body, sig, err := index.Sign(&idx, c.cfg.IndexKey)
	if err != nil {
		return nil, err
	}
	return &IndexAnswer{Body: body, Sig: sig, SigHeader: index.EncodeSignature(sig), ETag: etag(body)}, nil
}

// signIndex fills e with the answer to k at now, signed: the newest level
// k's feed, prefix, sticky date, UPDATE_DELAY, STICKY_PATCHSET and rollout
// gate allow of those published for its kernel, with k's maintenance
// window (none for an urgent level in a feed whose urgent levels skip
// it). It holds until the clock makes another level allowed, the window
// ends, or indexCacheMaxAge.
func (c *Core) signIndex(ctx context.Context, k indexKey, g *gates, order map[string]int, now time.Time, e *signedIndex) error {
	_, testPrefix, err := resolve.PrefixDelay(k.prefix)
	if err != nil {
		return err
	}
	feed, err := c.st.Feed(ctx, k.feed)
	if err != nil {
		return fmt.Errorf("feed %s: %w", k.feed, err)
	}
	levels, err := c.st.VisibleLevels(ctx, k.feed, k.buildID)
	if err != nil {
		return err
	}
	all, err := c.st.Levels(ctx, k.buildID)
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
	if held := g.held(k.feed, k.buildID, k.gate); len(held) > 0 {
		// Levels of rollouts that do not admit the server yet.
		levels = slices.DeleteFunc(levels, func(l store.Level) bool { return held[l.Patchset] })
	}
	req := resolve.Request{Prefix: k.prefix, Sticky: k.resolved, Delay: k.delay, Patchset: k.patchset, Order: order, Now: now}
	picked, err := resolve.Pick(levels, feed, req)
	if err != nil {
		return err
	}
	next, err := resolve.NextChange(levels, feed, req)
	if err != nil {
		return err
	}
	e.issued = now
	e.until = now.Add(min(indexCacheMaxAge, c.cfg.IndexTTL/10))
	if !next.IsZero() && next.Before(e.until) {
		e.until = next
	}
	e.idx = index.Index{
		Type:    index.Type,
		Version: k.version,
		Issued:  now,
		Expires: now.Add(c.cfg.IndexTTL),
		BuildID: k.buildID,
		Feed:    k.feed,
		// The question as the agent asked it, which it checks.
		Request: &index.Request{BuildID: k.buildID, Prefix: k.prefix, Sticky: k.sticky, Delay: k.delay, Patchset: k.patchset},
	}
	for _, l := range all {
		e.idx.KernelID = l.KernelID
		if l.Level > e.idx.Latest {
			e.idx.Latest = l.Level
		}
	}
	if picked != nil {
		e.picked = picked.Level
		e.idx.Level = &index.Level{
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
			Urgent:           g.urgent[picked.Patchset],
		}
	}
	if w, _ := window.Parse(k.window); !w.None() && !(e.idx.Level != nil && e.idx.Level.Urgent && g.policies[k.feed].UrgentSkipsWindow) {
		start, end := w.Next(now)
		e.idx.Window = &index.Window{Start: start, End: end}
		if end.Before(e.until) {
			e.until = end
		}
	}
	e.body, e.sig, err = index.Sign(&e.idx, c.cfg.IndexKey)
	return err
}

// reported returns the server as its last check-in recorded it, for
// resolve.RollbackFrom: a registered server as it authenticated (by its
// secret), a server known by its IP license from the record its
// check-ins keep; nil when there is none.
func (c *Core) reported(ctx context.Context, cl *Caller) (*store.Server, error) {
	if cl.Server.SecretHash != nil {
		return cl.Server, nil
	}
	srv, err := c.st.Server(ctx, cl.Server.ID)
	if isNotFound(err) {
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
	for i, cv := range in {
		out[i] = bundle.CVE{ID: cv.ID, Description: cv.Description, URL: cv.URL}
	}
	return out
}

// License is what licenses the asking server.
func (c *Core) License(ctx context.Context, cl *Caller) apitype.License {
	out := apitype.License{Type: apitype.LicenseIP, ServerID: cl.Server.ID, Feed: cl.Feed}
	if cl.Key != nil {
		k := cl.Key
		// The caller's key was read without its server count; count now.
		if counted, err := c.st.Key(ctx, k.Key); err == nil {
			k = counted
		}
		out.Type = apitype.LicenseKey
		out.Key = &apitype.KeyLicense{Key: k.Key, Limit: k.Limit, Servers: k.Servers, Note: k.Note, Sticky: k.Sticky}
	}
	return out
}

// KernelCareLevels returns, for KernelCare's patch-server paths, the
// levels of the kernel with kernelID that the main feed shows, and the
// newest of them a server with prefix is allowed now (nil: none). An
// unknown kernel is store.ErrNotFound.
func (c *Core) KernelCareLevels(ctx context.Context, kernelID, prefix string) (visible []store.Level, newest *store.Level, err error) {
	if _, _, err := resolve.PrefixDelay(prefix); err != nil {
		return nil, nil, err
	}
	all, err := c.st.LevelsByKernelID(ctx, kernelID)
	if err != nil {
		return nil, nil, err
	}
	if len(all) == 0 {
		return nil, nil, fmt.Errorf("kernel %s: %w", kernelID, store.ErrNotFound)
	}
	feed, err := c.st.Feed(ctx, apitype.MainFeed)
	if err != nil {
		return nil, nil, err
	}
	visible, err = c.st.VisibleLevels(ctx, apitype.MainFeed, all[0].BuildID)
	if err != nil {
		return nil, nil, err
	}
	newest, err = resolve.Pick(visible, feed, resolve.Request{Prefix: prefix, Now: c.Now()})
	return visible, newest, err
}

// OpenBlob opens the bundle with sha256 digest d; blobs.ErrNotFound when
// the portal holds none.
func (c *Core) OpenBlob(d string) (*os.File, error) { return c.cfg.Blobs.Open(d) }

// IndexPublicKey is the portal's index signing key's public half,
// armored: what agents trust beside the publishers' keys.
func (c *Core) IndexPublicKey() ([]byte, error) {
	if c.cfg.IndexKey == nil {
		return nil, ErrNoIndexKey
	}
	return c.cfg.IndexKey.PublicKey()
}
