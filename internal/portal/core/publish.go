package core

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/mirror"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

var patchsetRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// PublishOptions are what a publisher may set beside the bundle.
type PublishOptions struct {
	Released time.Time       // zero: the manifest's release time
	Channel  apitype.Channel // stable (default) or test
	Patchset string          // default K<YYYYMMDD>_01 of the release time
}

// levelAudit is a published level as the audit log shows it.
func levelAudit(l *store.Level) any {
	return map[string]any{"build_id": l.BuildID, "release": l.Release, "level": l.Level, "patchset": l.Patchset,
		"channel": l.Channel, "digest": l.Digest, "released": l.Released, "cves": len(l.CVEs)}
}

// publishers is the keyring a bundle must be signed by, or
// ErrNoPublisherKeys.
func (c *Core) publishers() (*trust.Keyring, error) {
	if c.cfg.Publishers == nil || c.cfg.Publishers.Len() == 0 {
		return nil, ErrNoPublisherKeys
	}
	return c.cfg.Publishers, nil
}

// Publish verifies a bundle against the publisher keys, stores it, and
// records it as a level. A level already published is store.ErrExists;
// a bundle that fails verification the bundle or trust package's error.
func (c *Core) Publish(ctx context.Context, a Actor, data, sig []byte, o PublishOptions) (*store.Level, error) {
	keys, err := c.publishers()
	if err != nil {
		return nil, err
	}
	b, err := bundle.Open(data, sig, keys)
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
		Published:        c.Now(),
		Patchset:         o.Patchset,
	}
	if !o.Released.IsZero() {
		l.Released = o.Released.UTC()
	}
	if l.Channel == "" {
		l.Channel = apitype.ChannelStable
	}
	if !l.Channel.Valid() {
		return nil, invalid("channel %q (stable or test)", l.Channel)
	}
	if l.Patchset == "" {
		l.Patchset = "K" + l.Released.Format("20060102") + "_01"
	}
	if !patchsetRE.MatchString(l.Patchset) {
		return nil, invalid("patchset name %q", l.Patchset)
	}
	for _, cv := range m.CVEs {
		l.CVEs = append(l.CVEs, store.CVE{ID: cv.ID, Description: cv.Description, URL: cv.URL})
	}
	if l.Manifest, err = json.Marshal(b.Manifest); err != nil {
		return nil, err
	}
	if l.Digest, err = c.cfg.Blobs.Put(data); err != nil {
		return nil, fmt.Errorf("store bundle: %w", err)
	}
	if err := c.st.AddLevel(ctx, l); err != nil {
		return nil, err
	}
	c.audit(ctx, a, "level.publish", fmt.Sprintf("%s/%d", l.BuildID, l.Level),
		fmt.Sprintf("release=%s patchset=%s channel=%s digest=%s", l.Release, l.Patchset, l.Channel, l.Digest), nil, levelAudit(l))
	return l, nil
}

// MirrorLevels lists, for a mirror's sync, the levels published at or
// after since, oldest first, as one portal hands them to another.
func (c *Core) MirrorLevels(ctx context.Context, since time.Time) (apitype.MirrorLevels, error) {
	out := apitype.MirrorLevels{Levels: []apitype.MirrorLevel{}}
	all, err := c.st.AllLevels(ctx, since)
	if err != nil {
		return out, err
	}
	for _, l := range all {
		out.Levels = append(out.Levels, mirror.FromStore(l))
	}
	return out, nil
}

// Sync fetches new levels from the upstream s names (its Upstream, Token,
// HTTP and DataDir; the rest is the core's) and records in the audit log
// a sync that stored or refused anything.
func (c *Core) Sync(ctx context.Context, a Actor, s mirror.Syncer) (*mirror.Status, error) {
	keys, err := c.publishers()
	if err != nil {
		return nil, err
	}
	s.Store, s.Blobs, s.Publishers, s.Log, s.Now = c.st, c.cfg.Blobs, keys, c.log, c.cfg.Now
	res, err := s.Sync(ctx)
	if res != nil && (res.Fetched > 0 || len(res.Refused) > 0) {
		c.audit(ctx, a, "mirror.sync", s.Upstream, fmt.Sprintf("fetched=%d refused=%d", res.Fetched, len(res.Refused)), nil, nil)
	}
	return res, err
}

// Import verifies an export archive whole and then stores its levels.
func (c *Core) Import(ctx context.Context, a Actor, name string, r io.Reader) (*mirror.ImportResult, error) {
	keys, err := c.publishers()
	if err != nil {
		return nil, err
	}
	res, err := mirror.Import(ctx, c.st, c.cfg.Blobs, keys, r)
	if err != nil {
		return res, err
	}
	c.audit(ctx, a, "mirror.import", name, fmt.Sprintf("levels=%d stored=%d already=%d", res.Levels, res.Stored, res.Already), nil, nil)
	return res, nil
}

// Export writes the levels o selects, and their bundles, to w.
func (c *Core) Export(ctx context.Context, o mirror.ExportOptions, w io.Writer) (int, error) {
	return mirror.Export(ctx, c.st, c.cfg.Blobs, o, w)
}
