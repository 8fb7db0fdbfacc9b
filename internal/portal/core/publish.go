package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
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

// PublisherKey is a publisher key the portal trusts, and where from.
type PublisherKey struct {
	Fingerprint string
	Name        string
	Armored     []byte
	// Source is "database" for a key eportal publisher add stored, or the
	// file or directory it was read from (the publishers directory).
	Source string
	Added  time.Time // for a key in the database
}

// SourceDatabase is the Source of a publisher key kept in the database.
const SourceDatabase = "database"

// PublisherKeys lists the publisher keys the portal trusts: those in the
// database, then those of the publishers directory.
func (c *Core) PublisherKeys(ctx context.Context) ([]PublisherKey, error) {
	stored, err := c.st.PublisherKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []PublisherKey
	seen := map[string]bool{}
	for _, k := range stored {
		out = append(out, PublisherKey{Fingerprint: k.Fingerprint, Name: k.Name, Armored: []byte(k.Armored), Source: SourceDatabase, Added: k.Added})
		seen[k.Fingerprint] = true
	}
	files, err := c.cfg.Publishers.Keys()
	if err != nil {
		return nil, err
	}
	for _, k := range files {
		if !seen[k.Fingerprint] {
			out = append(out, PublisherKey{Fingerprint: k.Fingerprint, Name: k.Name, Armored: k.Armored, Source: c.cfg.PublishersFrom})
		}
	}
	return out, nil
}

// publishers is the keyring a bundle must be signed by: the keys in the
// database and those of the publishers directory; ErrNoPublisherKeys
// when there are none. The database is read on every call, so a key
// another process (eportal publisher add, another replica) adds is
// trusted at once.
func (c *Core) publishers(ctx context.Context) (*trust.Keyring, error) {
	ring := &trust.Keyring{}
	ring.Add(c.cfg.Publishers)
	stored, err := c.st.PublisherKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range stored {
		r, err := trust.ReadKeyring([]byte(k.Armored))
		if err != nil {
			return nil, fmt.Errorf("publisher key %s in the database: %w", k.Fingerprint, err)
		}
		ring.Add(r)
	}
	if ring.Len() == 0 {
		return nil, ErrNoPublisherKeys
	}
	return ring, nil
}

// AddPublisherKeys trusts the public keys in data (armored or binary, as
// gpg --export writes them) from now on, keeping them in the database. A
// private key is refused, and so is a key already there
// (store.ErrExists).
func (c *Core) AddPublisherKeys(ctx context.Context, a Actor, data []byte) ([]store.PublisherKey, error) {
	ring, err := trust.ReadKeyring(data)
	if err != nil {
		return nil, invalid("%v", err)
	}
	keys, err := ring.Keys()
	if err != nil {
		return nil, err
	}
	var added []store.PublisherKey
	for _, k := range keys {
		pk := store.PublisherKey{Fingerprint: k.Fingerprint, Name: k.Name, Armored: string(k.Armored), Added: c.Now()}
		if err := c.st.AddPublisherKey(ctx, &pk); err != nil {
			return added, err
		}
		c.audit(ctx, a, "publisher.add", pk.Fingerprint, pk.Name, nil, map[string]any{"fingerprint": pk.Fingerprint, "name": pk.Name})
		added = append(added, pk)
	}
	return added, nil
}

// RemovePublisherKey stops trusting the key in the database whose
// fingerprint is fp (or ends in fp, at least 16 hex digits: its long key
// id). A key of the publishers directory is removed there, not here.
func (c *Core) RemovePublisherKey(ctx context.Context, a Actor, fp string) (*store.PublisherKey, error) {
	fp = strings.ToUpper(strings.ReplaceAll(fp, " ", ""))
	if len(fp) < 16 {
		return nil, invalid("fingerprint %q: give at least its last 16 hex digits", fp)
	}
	stored, err := c.st.PublisherKeys(ctx)
	if err != nil {
		return nil, err
	}
	var match []store.PublisherKey
	for _, k := range stored {
		if strings.HasSuffix(k.Fingerprint, fp) {
			match = append(match, k)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("publisher key %s in the database: %w", fp, store.ErrNotFound)
	case 1:
	default:
		return nil, invalid("%s names %d keys; give the whole fingerprint", fp, len(match))
	}
	k := match[0]
	if err := c.st.DeletePublisherKey(ctx, k.Fingerprint); err != nil {
		return nil, err
	}
	c.audit(ctx, a, "publisher.remove", k.Fingerprint, k.Name, map[string]any{"fingerprint": k.Fingerprint, "name": k.Name}, nil)
	return &k, nil
}

// Publish verifies a bundle against the publisher keys, stores it, and
// records it as a level. A level already published is store.ErrExists;
// a bundle that fails verification the bundle or trust package's error.
func (c *Core) Publish(ctx context.Context, a Actor, data, sig []byte, o PublishOptions) (*store.Level, error) {
	keys, err := c.publishers(ctx)
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
	c.beginRollouts(ctx)
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

// ErrSyncing is a sync asked of a replica while another replica of the
// portal syncs: one at a time, so that two do not fetch the same levels.
var ErrSyncing = errors.New("another replica of the portal is syncing from the upstream now")

// Sync fetches new levels from the upstream s names (its Upstream, Token,
// HTTP and DataDir; the rest is the core's) and records in the audit log
// a sync that stored or refused anything. Of the portal's replicas, one
// syncs at a time: the others get ErrSyncing.
func (c *Core) Sync(ctx context.Context, a Actor, s mirror.Syncer) (*mirror.Status, error) {
	unlock, ok, err := c.st.TryLock(ctx, "sync")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrSyncing
	}
	defer unlock()
	keys, err := c.publishers(ctx)
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
	keys, err := c.publishers(ctx)
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
