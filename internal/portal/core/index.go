package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/portal/resolve"
	"github.com/kcare/kcare/internal/portal/store"
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

// Index answers a server with the signed index for its kernel: the exact
// body and the portal's detached signature. A bad prefix or sticky date
// is resolve.ErrBadPrefix or ErrBadSticky.
func (c *Core) Index(ctx context.Context, cl *Caller, q IndexRequest) (body, sig []byte, err error) {
	if c.cfg.IndexKey == nil {
		return nil, nil, ErrNoIndexKey
	}
	if !apitype.BuildIDRE.MatchString(q.BuildID) {
		return nil, nil, &apitype.FieldError{Field: "build-id"}
	}
	req := resolve.Request{Prefix: q.Prefix, Sticky: q.Sticky, Delay: q.Delay, Patchset: q.Patchset, Now: c.Now()}
	if q.Patchset != "" {
		all, err := c.st.Patchsets(ctx)
		if err != nil {
			return nil, nil, err
		}
		req.Order = make(map[string]int, len(all))
		for i, p := range all {
			req.Order[p.Name] = i
		}
	}
	if req.Sticky == "KEY" {
		req.Sticky = ""
		if cl.Key != nil {
			req.Sticky = cl.Key.Sticky
		}
	}
	_, testPrefix, err := resolve.PrefixDelay(req.Prefix)
	if err != nil {
		return nil, nil, err
	}
	feed, err := c.st.Feed(ctx, cl.Feed)
	if err != nil {
		return nil, nil, fmt.Errorf("feed %s: %w", cl.Feed, err)
	}
	levels, err := c.st.VisibleLevels(ctx, cl.Feed, q.BuildID)
	if err != nil {
		return nil, nil, err
	}
	all, err := c.st.Levels(ctx, q.BuildID)
	if err != nil {
		return nil, nil, err
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
		return nil, nil, err
	}
	version, err := c.st.Version(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := c.Now()
	idx := &index.Index{
		Type:     "kcare-index",
		Version:  version,
		Issued:   now,
		Expires:  now.Add(c.cfg.IndexTTL),
		ServerID: cl.Server.ID,
		BuildID:  q.BuildID,
		Feed:     cl.Feed,
		// The question as the agent asked it, which it checks.
		Request: &index.Request{BuildID: q.BuildID, Prefix: q.Prefix, Sticky: q.Sticky, Delay: q.Delay, Patchset: q.Patchset},
	}
	reported, err := c.reported(ctx, cl)
	if err != nil {
		return nil, nil, err
	}
	if from := resolve.RollbackFrom(reported, q.BuildID, picked); from > 0 {
		idx.Rollback = &index.Rollback{Level: picked.Level, From: from, ServerID: cl.Server.ID}
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
	return index.Sign(idx, c.cfg.IndexKey)
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
