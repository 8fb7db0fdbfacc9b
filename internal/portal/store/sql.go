package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
)

// sqlStore is Store on database/sql, for both backends; d holds what
// differs between them.
type sqlStore struct {
	d dialect
	w *sql.DB // writes; for SQLite its one writer connection
	r *sql.DB // reads; for SQLite a pool of query-only connections, for PostgreSQL w
}

// writeAttempts bounds how often a transaction that failed with a
// retryable error (isRetryable) is run: SQLite's busy timeout already
// waited inside each attempt.
const writeAttempts = 8

func (s *sqlStore) Close() error {
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

func (s *sqlStore) Kind() string { return s.d.name }

// retry runs fn until it succeeds, fails with an error that is not
// retryable, or has run writeAttempts times.
func (s *sqlStore) retry(ctx context.Context, fn func() error) error {
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !isRetryable(err) || attempt == writeAttempts {
			return err
		}
		t := time.NewTimer(backoff + rand.N(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff *= 2
	}
}

// write runs fn in a write transaction, again when the database was busy.
func (s *sqlStore) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.retry(ctx, func() error {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// exec runs one statement outside a transaction, again when the
// database was busy, and returns the rows it affected.
func (s *sqlStore) exec(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := s.retry(ctx, func() error {
		res, err := s.w.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// bump counts a change that can change an index. It comes first in its
// transaction, so on PostgreSQL it also orders the changes.
func bump(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE store_version SET n = n + 1 WHERE id = 1`)
	return err
}

// affected turns "no row changed" into ErrNotFound.
func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// queryer is what both *sql.DB and *sql.Tx offer.
type queryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func feedChannel(ctx context.Context, q queryer, name string) (apitype.Channel, error) {
	var ch apitype.Channel
	err := q.QueryRowContext(ctx, `SELECT channel FROM feeds WHERE name = $1`, name).Scan(&ch)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("feed %s: %w", name, ErrNotFound)
	}
	return ch, err
}

func (s *sqlStore) Version(ctx context.Context) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT n FROM store_version WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read store version: %w", err)
	}
	return n, nil
}

// Levels.

const levelCols = `l.id, l.build_id, l.kernel_id, l.kernel_release, l.level, l.patchset, l.channel,
	l.digest, l.size, l.signature, l.manifest, l.effective_release, l.cves, l.released, l.published`

type scanner interface{ Scan(dest ...any) error }

func scanLevel(r scanner) (Level, error) {
	var l Level
	var cves string
	err := r.Scan(&l.ID, &l.BuildID, &l.KernelID, &l.Release, &l.Level, &l.Patchset, &l.Channel,
		&l.Digest, &l.Size, &l.Signature, &l.Manifest, &l.EffectiveRelease, &cves,
		timeCol{&l.Released}, timeCol{&l.Published})
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal([]byte(cves), &l.CVEs); err != nil {
		return l, fmt.Errorf("level %s/%d: CVEs: %w", l.BuildID, l.Level, err)
	}
	return l, nil
}

func (s *sqlStore) levels(ctx context.Context, what, q string, args ...any) ([]Level, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []Level
	for rows.Next() {
		l, err := scanLevel(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func (s *sqlStore) AddLevel(ctx context.Context, l *Level) error {
	if l.Channel == "" {
		l.Channel = apitype.ChannelStable
	}
	switch {
	case l.BuildID == "", l.Patchset == "", l.Digest == "":
		return fmt.Errorf("add level: build-id, patchset and digest are required: %w", ErrInvalidInput)
	case l.Level < 0, l.Size < 0:
		return fmt.Errorf("add level %s/%d: negative level or size: %w", l.BuildID, l.Level, ErrInvalidInput)
	case !l.Channel.Valid():
		return fmt.Errorf("add level %s/%d: channel %q: %w", l.BuildID, l.Level, l.Channel, ErrInvalidInput)
	}
	if l.Published.IsZero() {
		l.Published = now()
	}
	if l.Released.IsZero() {
		l.Released = l.Published
	}
	l.Published, l.Released = norm(l.Published), norm(l.Released)
	cves := l.CVEs
	if cves == nil {
		cves = []CVE{}
	}
	cvesJSON, err := json.Marshal(cves)
	if err != nil {
		return fmt.Errorf("add level %s/%d: %w", l.BuildID, l.Level, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		var released time.Time
		err := tx.QueryRowContext(ctx, `SELECT released FROM patchsets WHERE name = $1`, l.Patchset).Scan(timeCol{&released})
		isNew := errors.Is(err, sql.ErrNoRows)
		switch {
		case isNew:
			_, err = tx.ExecContext(ctx, `INSERT INTO patchsets (name, released) VALUES ($1, $2)`,
				l.Patchset, s.d.t(l.Released))
		case err == nil && l.Released.After(released):
			_, err = tx.ExecContext(ctx, `UPDATE patchsets SET released = $2 WHERE name = $1`,
				l.Patchset, s.d.t(l.Released))
		}
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `INSERT INTO levels (build_id, kernel_id, kernel_release, level,
	patchset, channel, digest, size, signature, manifest, effective_release, cves, released, published)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id`,
			l.BuildID, l.KernelID, l.Release, l.Level, l.Patchset, l.Channel, l.Digest, l.Size,
			l.Signature, l.Manifest, l.EffectiveRelease, string(cvesJSON),
			s.d.t(l.Released), s.d.t(l.Published)).Scan(&l.ID)
		if isUnique(err) {
			return ErrExists
		}
		if err != nil || !isNew {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO feed_patchsets (feed, patchset, enabled)
SELECT name, $1, TRUE FROM feeds WHERE auto`, l.Patchset)
		return err
	})
	if err != nil {
		return fmt.Errorf("add level %s/%d: %w", l.BuildID, l.Level, err)
	}
	return nil
}

func (s *sqlStore) Levels(ctx context.Context, buildID string) ([]Level, error) {
	return s.levels(ctx, "levels of "+buildID,
		`SELECT `+levelCols+` FROM levels l WHERE l.build_id = $1 ORDER BY l.level`, buildID)
}

func (s *sqlStore) LevelsByKernelID(ctx context.Context, kernelID string) ([]Level, error) {
	return s.levels(ctx, "levels of kernel "+kernelID,
		`SELECT `+levelCols+` FROM levels l WHERE l.kernel_id = $1 ORDER BY l.build_id, l.level`, kernelID)
}

func (s *sqlStore) LevelByDigest(ctx context.Context, digest string) (*Level, error) {
	l, err := scanLevel(s.r.QueryRowContext(ctx,
		`SELECT `+levelCols+` FROM levels l WHERE l.digest = $1 ORDER BY l.id LIMIT 1`, digest))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("level with digest %s: %w", digest, err)
	}
	return &l, nil
}

func (s *sqlStore) VisibleLevels(ctx context.Context, feed, buildID string) ([]Level, error) {
	ch, err := feedChannel(ctx, s.r, feed)
	if err != nil {
		return nil, fmt.Errorf("visible levels of %s: %w", buildID, err)
	}
	return s.levels(ctx, "visible levels of "+buildID+" in feed "+feed,
		`SELECT `+levelCols+` FROM levels l
JOIN feed_patchsets fp ON fp.patchset = l.patchset AND fp.feed = $1 AND fp.enabled
WHERE l.build_id = $2 AND (l.channel = 'stable' OR $3)
ORDER BY l.level`, feed, buildID, ch == apitype.ChannelTest)
}

// Patchsets and feeds.

func (s *sqlStore) Patchsets(ctx context.Context) ([]Patchset, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT p.name, p.released, COUNT(l.id) FROM patchsets p
LEFT JOIN levels l ON l.patchset = p.name
GROUP BY p.name, p.released ORDER BY p.released, p.name`)
	if err != nil {
		return nil, fmt.Errorf("patchsets: %w", err)
	}
	defer rows.Close()
	var out []Patchset
	for rows.Next() {
		var p Patchset
		if err := rows.Scan(&p.Name, timeCol{&p.Released}, &p.Levels); err != nil {
			return nil, fmt.Errorf("patchsets: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("patchsets: %w", err)
	}
	return out, nil
}

func (s *sqlStore) FeedPatchsets(ctx context.Context, feed string) ([]FeedPatchset, error) {
	if _, err := feedChannel(ctx, s.r, feed); err != nil {
		return nil, fmt.Errorf("patchsets of feed: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT p.name, p.released, COALESCE(fp.enabled, FALSE), fp.patchset IS NOT NULL FROM patchsets p
LEFT JOIN feed_patchsets fp ON fp.patchset = p.name AND fp.feed = $1
ORDER BY p.released, p.name`, feed)
	if err != nil {
		return nil, fmt.Errorf("patchsets of feed %s: %w", feed, err)
	}
	defer rows.Close()
	var out []FeedPatchset
	for rows.Next() {
		p := FeedPatchset{Feed: feed}
		if err := rows.Scan(&p.Patchset, timeCol{&p.Released}, &p.Enabled, &p.Deployed); err != nil {
			return nil, fmt.Errorf("patchsets of feed %s: %w", feed, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("patchsets of feed %s: %w", feed, err)
	}
	return out, nil
}

func (s *sqlStore) SetPatchsets(ctx context.Context, feed string, patchsets []string, enabled bool) error {
	verb := "disable"
	if enabled {
		verb = "enable"
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := feedChannel(ctx, tx, feed); err != nil {
			return err
		}
		for _, p := range patchsets {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM patchsets WHERE name = $1`, p).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("patchset %s: %w", p, ErrNotFound)
			}
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO feed_patchsets (feed, patchset, enabled) VALUES ($1, $2, $3)
ON CONFLICT (feed, patchset) DO UPDATE SET enabled = excluded.enabled`, feed, p, enabled)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s patchsets in feed %s: %w", verb, feed, err)
	}
	return nil
}

// validName reports whether name can name a feed: letters, digits and
// ".-_", as it appears in URLs and file names.
func validName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func checkFeed(f *Feed) error {
	if f.Channel == "" {
		f.Channel = apitype.ChannelStable
	}
	switch {
	case !validName(f.Name):
		return fmt.Errorf("feed name %q: %w", f.Name, ErrInvalidInput)
	case !f.Channel.Valid():
		return fmt.Errorf("feed %s: channel %q: %w", f.Name, f.Channel, ErrInvalidInput)
	case f.DeployAfter < 0:
		return fmt.Errorf("feed %s: negative deploy delay: %w", f.Name, ErrInvalidInput)
	}
	return nil
}

func (s *sqlStore) AddFeed(ctx context.Context, f *Feed) error {
	if err := checkFeed(f); err != nil {
		return fmt.Errorf("add feed: %w", err)
	}
	if f.Created.IsZero() {
		f.Created = now()
	}
	f.Created = norm(f.Created)
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO feeds (name, channel, deploy_after, auto, created)
VALUES ($1, $2, $3, $4, $5)`, f.Name, f.Channel, int64(f.DeployAfter), f.Auto, s.d.t(f.Created))
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add feed %s: %w", f.Name, err)
	}
	return nil
}

const feedCols = `name, channel, deploy_after, auto, created`

func scanFeed(r scanner) (Feed, error) {
	var f Feed
	var after int64
	err := r.Scan(&f.Name, &f.Channel, &after, &f.Auto, timeCol{&f.Created})
	f.DeployAfter = time.Duration(after)
	return f, err
}

func (s *sqlStore) Feed(ctx context.Context, name string) (*Feed, error) {
	f, err := scanFeed(s.r.QueryRowContext(ctx, `SELECT `+feedCols+` FROM feeds WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("feed %s: %w", name, err)
	}
	return &f, nil
}

func (s *sqlStore) Feeds(ctx context.Context) ([]Feed, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+feedCols+` FROM feeds`)
	if err != nil {
		return nil, fmt.Errorf("feeds: %w", err)
	}
	defer rows.Close()
	var out []Feed
	for rows.Next() {
		f, err := scanFeed(rows)
		if err != nil {
			return nil, fmt.Errorf("feeds: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("feeds: %w", err)
	}
	SortFeeds(out)
	return out, nil
}

func (s *sqlStore) UpdateFeed(ctx context.Context, f *Feed) error {
	if err := checkFeed(f); err != nil {
		return fmt.Errorf("update feed: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `UPDATE feeds SET channel = $2, deploy_after = $3, auto = $4 WHERE name = $1`,
			f.Name, f.Channel, int64(f.DeployAfter), f.Auto))
	})
	if err != nil {
		return fmt.Errorf("update feed %s: %w", f.Name, err)
	}
	return nil
}

func (s *sqlStore) DeleteFeed(ctx context.Context, name string) error {
	if name == apitype.MainFeed {
		return fmt.Errorf("delete feed main: %w", ErrInUse)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		for _, q := range []string{
			`UPDATE keys SET feed = 'main' WHERE feed = $1`,
			`UPDATE ip_licenses SET feed = 'main' WHERE feed = $1`,
			`UPDATE servers SET ip_feed = 'main' WHERE ip_feed = $1`,
			`DELETE FROM feed_patchsets WHERE feed = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, name); err != nil {
				return err
			}
		}
		return affected(tx.ExecContext(ctx, `DELETE FROM feeds WHERE name = $1`, name))
	})
	if err != nil {
		return fmt.Errorf("delete feed %s: %w", name, err)
	}
	return nil
}

// Keys and IP licenses.

// parseCIDR parses a CIDR, or a single address as its one-address
// prefix, and returns it in canonical form (host bits cleared).
func parseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("ip range %q: %w", s, ErrInvalidInput)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip range %q: %w", s, ErrInvalidInput)
	}
	return p.Masked(), nil
}

// validKey reports whether k can be an activation key: printable ASCII
// without spaces or slashes, as it appears in URLs and kcarectl's
// command line.
func validKey(k string) bool {
	if k == "" || len(k) > 200 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c > '~' || c == '/' {
			return false
		}
	}
	return true
}

func checkKey(k *Key) (rangesJSON string, err error) {
	if k.Feed == "" {
		k.Feed = apitype.MainFeed
	}
	if !validKey(k.Key) {
		return "", fmt.Errorf("key %q: %w", k.Key, ErrInvalidInput)
	}
	if k.Limit < 0 {
		return "", fmt.Errorf("key %s: negative server limit: %w", MaskKey(k.Key), ErrInvalidInput)
	}
	ranges := make([]string, 0, len(k.IPRanges))
	for _, r := range k.IPRanges {
		p, err := parseCIDR(r)
		if err != nil {
			return "", fmt.Errorf("key %s: %w", MaskKey(k.Key), err)
		}
		ranges = append(ranges, p.String())
	}
	k.IPRanges = nil
	if len(ranges) > 0 {
		k.IPRanges = ranges
	}
	b, err := json.Marshal(ranges)
	return string(b), err
}

func (s *sqlStore) AddKey(ctx context.Context, k *Key) error {
	ranges, err := checkKey(k)
	if err != nil {
		return fmt.Errorf("add key: %w", err)
	}
	if k.Created.IsZero() {
		k.Created = now()
	}
	k.Created = norm(k.Created)
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := feedChannel(ctx, tx, k.Feed); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO keys (key, note, server_limit, feed, sticky, ip_ranges, created)
VALUES ($1, $2, $3, $4, $5, $6, $7)`, k.Key, k.Note, k.Limit, k.Feed, k.Sticky, ranges, s.d.t(k.Created))
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add key %s: %w", MaskKey(k.Key), err)
	}
	return nil
}

const keyCols = keySettingsCols + `,
	(SELECT COUNT(*) FROM servers s WHERE s.key = k.key)`

// keySettingsCols are a key's own columns, without its server count.
const keySettingsCols = `k.key, k.note, k.server_limit, k.feed, k.sticky, k.ip_ranges, k.created`

func scanKey(r scanner) (Key, error) { return scanKeyCols(r, true) }

func scanKeyCols(r scanner, count bool) (Key, error) {
	var k Key
	var ranges string
	dest := []any{&k.Key, &k.Note, &k.Limit, &k.Feed, &k.Sticky, &ranges, timeCol{&k.Created}}
	if count {
		dest = append(dest, &k.Servers)
	}
	err := r.Scan(dest...)
	if err != nil {
		return k, err
	}
	if err := json.Unmarshal([]byte(ranges), &k.IPRanges); err != nil {
		return k, fmt.Errorf("key %s: ip ranges: %w", MaskKey(k.Key), err)
	}
	if len(k.IPRanges) == 0 {
		k.IPRanges = nil
	}
	return k, nil
}

func (s *sqlStore) Key(ctx context.Context, key string) (*Key, error) {
	k, err := s.KeySettings(ctx, key)
	if err != nil {
		return nil, err
	}
	// Counted on its own, with the key as a parameter, so that PostgreSQL
	// plans it on the servers_key index rather than a scan.
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM servers WHERE key = $1`, key).Scan(&k.Servers); err != nil {
		return nil, fmt.Errorf("key %s: count servers: %w", MaskKey(key), err)
	}
	return k, nil
}

func (s *sqlStore) KeySettings(ctx context.Context, key string) (*Key, error) {
	k, err := scanKeyCols(s.r.QueryRowContext(ctx, `SELECT `+keySettingsCols+` FROM keys k WHERE k.key = $1`, key), false)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", MaskKey(key), err)
	}
	return &k, nil
}

func (s *sqlStore) Keys(ctx context.Context) ([]Key, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+keyCols+` FROM keys k ORDER BY k.created, k.key`)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer rows.Close()
	var out []Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return out, nil
}

func (s *sqlStore) UpdateKey(ctx context.Context, k *Key) error {
	ranges, err := checkKey(k)
	if err != nil {
		return fmt.Errorf("update key: %w", err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := feedChannel(ctx, tx, k.Feed); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `UPDATE keys SET note = $2, server_limit = $3, feed = $4, sticky = $5,
	ip_ranges = $6 WHERE key = $1`, k.Key, k.Note, k.Limit, k.Feed, k.Sticky, ranges))
	})
	if err != nil {
		return fmt.Errorf("update key %s: %w", MaskKey(k.Key), err)
	}
	return nil
}

func (s *sqlStore) DeleteKey(ctx context.Context, key string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM servers WHERE key = $1`, key); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `DELETE FROM keys WHERE key = $1`, key))
	})
	if err != nil {
		return fmt.Errorf("delete key %s: %w", MaskKey(key), err)
	}
	return nil
}

func (s *sqlStore) AddIPLicense(ctx context.Context, l *IPLicense) error {
	p, err := parseCIDR(l.CIDR)
	if err != nil {
		return fmt.Errorf("add IP license: %w", err)
	}
	l.CIDR = p.String()
	if l.Feed == "" {
		l.Feed = apitype.MainFeed
	}
	if l.Created.IsZero() {
		l.Created = now()
	}
	l.Created = norm(l.Created)
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := feedChannel(ctx, tx, l.Feed); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO ip_licenses (cidr, feed, note, created) VALUES ($1, $2, $3, $4)`,
			l.CIDR, l.Feed, l.Note, s.d.t(l.Created))
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add IP license %s: %w", l.CIDR, err)
	}
	return nil
}

func (s *sqlStore) IPLicenses(ctx context.Context) ([]IPLicense, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT cidr, feed, note, created FROM ip_licenses ORDER BY created, cidr`)
	if err != nil {
		return nil, fmt.Errorf("IP licenses: %w", err)
	}
	defer rows.Close()
	var out []IPLicense
	for rows.Next() {
		var l IPLicense
		if err := rows.Scan(&l.CIDR, &l.Feed, &l.Note, timeCol{&l.Created}); err != nil {
			return nil, fmt.Errorf("IP licenses: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("IP licenses: %w", err)
	}
	return out, nil
}

func (s *sqlStore) DeleteIPLicense(ctx context.Context, cidr string) error {
	if p, err := parseCIDR(cidr); err == nil {
		cidr = p.String()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `DELETE FROM ip_licenses WHERE cidr = $1`, cidr))
	})
	if err != nil {
		return fmt.Errorf("delete IP license %s: %w", cidr, err)
	}
	return nil
}

// Servers.

const serverCols = `s.id, s.secret_hash, s.key, s.ip_feed, s.hostname, s.ip, s.kernel_release, s.build_id,
	s.kernel_id, s.level, s.effective_release, s.last_result, s.agent_version, s.tags,
	s.registered, s.last_checkin`

func scanServer(r scanner) (Server, error) {
	var v Server
	err := r.Scan(&v.ID, &v.SecretHash, nullString{&v.Key}, nullString{&v.LicenseFeed}, &v.Hostname, &v.IP, &v.Release, &v.BuildID,
		&v.KernelID, &v.Level, &v.EffectiveRelease, &v.LastResult, &v.AgentVersion, &v.Tags,
		timeCol{&v.Registered}, timeCol{&v.LastCheckin})
	return v, err
}

// insertServer is the INSERT of one server; its arguments are serverArgs.
const insertServer = `INSERT INTO servers (id, secret_hash, key, ip_feed, hostname, ip, kernel_release,
	build_id, kernel_id, level, effective_release, last_result, agent_version, tags, registered, last_checkin)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`

func (s *sqlStore) serverArgs(v *Server, ipFeed string) []any {
	return []any{v.ID, v.SecretHash, nullable(v.Key), nullable(ipFeed), v.Hostname, v.IP, v.Release,
		v.BuildID, v.KernelID, v.Level, v.EffectiveRelease, v.LastResult, v.AgentVersion, v.Tags,
		s.d.t(v.Registered), s.d.t(v.LastCheckin)}
}

// ipAllowed reports whether ip is inside one of ranges; any ip is
// allowed when there are none.
func ipAllowed(ip string, ranges []string) bool {
	if len(ranges) == 0 {
		return true
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, r := range ranges {
		if p, err := netip.ParsePrefix(r); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *sqlStore) Register(ctx context.Context, key string, v *Server) error {
	if v.ID == "" {
		return fmt.Errorf("register server under key %s: no server id: %w", MaskKey(key), ErrInvalidInput)
	}
	if v.Registered.IsZero() {
		v.Registered = now()
	}
	v.Registered, v.LastCheckin = norm(v.Registered), norm(v.LastCheckin)
	v.Key = key
	err := s.write(ctx, func(tx *sql.Tx) error {
		var limit int
		var rangesJSON string
		err := tx.QueryRowContext(ctx, `SELECT server_limit, ip_ranges FROM keys WHERE key = $1`+s.d.forUpdate,
			key).Scan(&limit, &rangesJSON)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrInvalidKey
		}
		if err != nil {
			return err
		}
		var ranges []string
		if err := json.Unmarshal([]byte(rangesJSON), &ranges); err != nil {
			return fmt.Errorf("ip ranges: %w", err)
		}
		if !ipAllowed(v.IP, ranges) {
			return fmt.Errorf("%s: %w", v.IP, ErrIPNotAllowed)
		}
		if limit > 0 {
			var n int
			err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM servers WHERE key = $1`, key).Scan(&n)
			if err != nil {
				return err
			}
			if n >= limit {
				return fmt.Errorf("%d of %d: %w", n, limit, ErrLimitReached)
			}
		}
		_, err = tx.ExecContext(ctx, insertServer, s.serverArgs(v, "")...)
		if isUnique(err) {
			return fmt.Errorf("server %s: %w", v.ID, ErrExists)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("register server %s under key %s: %w", v.ID, MaskKey(key), err)
	}
	return nil
}

func (s *sqlStore) UpsertIPServer(ctx context.Context, v *Server, feed string) error {
	switch {
	case v.ID == "":
		return fmt.Errorf("record IP-licensed server: no server id: %w", ErrInvalidInput)
	case feed == "":
		return fmt.Errorf("record IP-licensed server %s: no feed: %w", v.ID, ErrInvalidInput)
	}
	t := now()
	if v.Registered.IsZero() {
		v.Registered = t
	}
	if v.LastCheckin.IsZero() {
		v.LastCheckin = t
	}
	v.Registered, v.LastCheckin = norm(v.Registered), norm(v.LastCheckin)
	v.Key, v.LicenseFeed = "", feed
	n, err := s.exec(ctx, insertServer+`
ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, ip_feed = excluded.ip_feed,
	hostname = excluded.hostname, ip = excluded.ip, kernel_release = excluded.kernel_release,
	build_id = excluded.build_id, kernel_id = excluded.kernel_id, level = excluded.level,
	effective_release = excluded.effective_release, last_result = excluded.last_result,
	agent_version = excluded.agent_version, tags = excluded.tags, last_checkin = excluded.last_checkin
WHERE servers.key IS NULL`, s.serverArgs(v, feed)...)
	if err == nil && n == 0 {
		err = fmt.Errorf("registered under a key: %w", ErrExists)
	}
	if err != nil {
		return fmt.Errorf("record IP-licensed server %s: %w", v.ID, err)
	}
	return nil
}

func (s *sqlStore) Server(ctx context.Context, id string) (*Server, error) {
	v, err := scanServer(s.r.QueryRowContext(ctx, `SELECT `+serverCols+` FROM servers s WHERE s.id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", id, err)
	}
	return &v, nil
}

// serverFeed is the feed a server's updates come from: its key's, or
// its IP license's.
const serverFeed = `COALESCE(k.feed, s.ip_feed, 'main')`

// newestVisible is, per feed and build-id, the newest visible level: a
// small table (feeds times kernels) that Servers joins to every server
// it reads for IsUpdated, whatever the planner thinks of the tables'
// sizes.
const newestVisible = `SELECT fp.feed AS feed, l.build_id AS build_id, MAX(l.level) AS level
	FROM levels l
	JOIN feed_patchsets fp ON fp.patchset = l.patchset AND fp.enabled
	JOIN feeds f ON f.name = fp.feed
	WHERE l.channel = 'stable' OR f.channel = 'test'
	GROUP BY fp.feed, l.build_id`

func (s *sqlStore) Servers(ctx context.Context, f ServerFilter) ([]Server, error) {
	if (f.CheckinAge > 0 || f.ActiveWithin > 0) && f.Now.IsZero() {
		return nil, fmt.Errorf("servers: %w: a check-in age needs the caller's Now", ErrInvalidInput)
	}
	q, args := s.serversQuery(f, f.Now)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	defer rows.Close()
	var out []Server
	for rows.Next() {
		v, err := scanServer(rows)
		if err != nil {
			return nil, fmt.Errorf("servers: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	return out, nil
}

// serversQuery is the SELECT for Servers(f) at time now.
func (s *sqlStore) serversQuery(f ServerFilter, now time.Time) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	join := false
	if f.Hostname != "" {
		where = append(where, `s.hostname `+s.d.like+` `+arg(likeEscape(f.Hostname))+` ESCAPE '\'`)
	}
	if f.IP != "" {
		where = append(where, `s.ip = `+arg(f.IP))
	}
	if f.Key != "" {
		where = append(where, `s.key = `+arg(f.Key))
	}
	if f.Feed != "" {
		join = true
		where = append(where, serverFeed+` = `+arg(f.Feed))
	}
	if f.CheckinAge > 0 {
		where = append(where, `(s.last_checkin IS NULL OR s.last_checkin < `+arg(s.d.t(now.Add(-f.CheckinAge)))+`)`)
	}
	if f.IsUpdated != nil {
		join = true
		// No visible level counts as updated: levels are never negative.
		if *f.IsUpdated {
			where = append(where, `s.level >= COALESCE(nv.level, -1)`)
		} else {
			where = append(where, `s.level < COALESCE(nv.level, -1)`)
		}
	}
	if f.Tag != "" {
		where = append(where, `s.tags `+s.d.like+` `+arg(likeEscape(f.Tag))+` ESCAPE '\'`)
	}
	if f.Search != "" {
		p := arg(likeEscape(f.Search))
		where = append(where, `(s.hostname `+s.d.like+` `+p+` ESCAPE '\' OR s.ip `+s.d.like+` `+p+` ESCAPE '\')`)
	}
	if f.ActiveWithin > 0 {
		where = append(where, `s.last_checkin >= `+arg(s.d.t(now.Add(-f.ActiveWithin))))
	}
	if f.Unsupported != nil {
		not := ""
		if !*f.Unsupported {
			not = "NOT "
		}
		where = append(where, not+`NOT EXISTS (SELECT 1 FROM levels l WHERE l.build_id = s.build_id)`)
	}
	col, cmp, dir := `s.registered`, ` > `, ``
	switch f.Sort {
	case "hostname":
		col = `s.hostname`
	case "ip":
		col = `s.ip`
	}
	if f.Desc {
		cmp, dir = ` < `, ` DESC`
	}
	if f.After != nil {
		var v any = f.After.Value
		if col == `s.registered` {
			t, err := time.Parse(time.RFC3339Nano, f.After.Value)
			if err != nil {
				t = time.Time{}
			}
			v = s.d.t(t)
		}
		pv, pid := arg(v), arg(f.After.ID)
		// A row-value comparison: both backends walk the (col, id) index.
		where = append(where, `(`+col+`, s.id)`+cmp+`(`+pv+`, `+pid+`)`)
	}
	var q strings.Builder
	if f.IsUpdated != nil {
		q.WriteString(`WITH nv AS (` + newestVisible + `) `)
	}
	q.WriteString(`SELECT ` + serverCols + ` FROM servers s`)
	if join {
		q.WriteString(` LEFT JOIN keys k ON k.key = s.key`)
	}
	if f.IsUpdated != nil {
		q.WriteString(` LEFT JOIN nv ON nv.feed = ` + serverFeed + ` AND nv.build_id = s.build_id`)
	}
	if len(where) > 0 {
		q.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	q.WriteString(` ORDER BY ` + col + dir + `, s.id` + dir)
	switch {
	case f.Limit > 0:
		q.WriteString(` LIMIT ` + arg(f.Limit))
	case f.Offset > 0 && s.d.name == "sqlite":
		q.WriteString(` LIMIT -1`) // SQLite has no OFFSET without LIMIT
	}
	if f.Offset > 0 {
		q.WriteString(` OFFSET ` + arg(f.Offset))
	}
	return q.String(), args
}

func (s *sqlStore) CountServers(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM servers`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count servers: %w", err)
	}
	return n, nil
}

func (s *sqlStore) CheckIn(ctx context.Context, id string, c CheckIn) error {
	if c.At.IsZero() {
		c.At = time.Now()
	}
	var tags any
	if c.Tags != nil {
		tags = *c.Tags
	}
	// The history row goes in the same transaction: one INSERT more on
	// the hot path; PruneCheckins trims it.
	err := s.write(ctx, func(tx *sql.Tx) error {
		err := affected(tx.ExecContext(ctx, `UPDATE servers SET hostname = $2, ip = $3, kernel_release = $4, build_id = $5,
	kernel_id = $6, level = $7, effective_release = $8, last_result = $9, agent_version = $10,
	tags = COALESCE($11, tags), last_checkin = $12 WHERE id = $1`,
			id, c.Hostname, c.IP, c.Release, c.BuildID, c.KernelID, c.Level, c.EffectiveRelease,
			c.LastResult, c.AgentVersion, tags, s.d.t(c.At)))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO checkins (server_id, at, level, effective_release, result)
VALUES ($1, $2, $3, $4, $5)`, id, s.d.t(c.At), c.Level, c.EffectiveRelease, c.LastResult)
		return err
	})
	if err != nil {
		return fmt.Errorf("check in server %s: %w", id, err)
	}
	return nil
}

func (s *sqlStore) SetServerTags(ctx context.Context, id, tags string) error {
	n, err := s.exec(ctx, `UPDATE servers SET tags = $2 WHERE id = $1`, id, tags)
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("set tags of server %s: %w", id, err)
	}
	return nil
}

func (s *sqlStore) DeleteServer(ctx context.Context, id string) error {
	n, err := s.exec(ctx, `DELETE FROM servers WHERE id = $1`, id)
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete server %s: %w", id, err)
	}
	return nil
}

func (s *sqlStore) CleanServers(ctx context.Context, before time.Time) (int, error) {
	b := s.d.t(before)
	n, err := s.exec(ctx, `DELETE FROM servers
WHERE last_checkin < $1 OR (last_checkin IS NULL AND registered < $1)`, b)
	if err != nil {
		return 0, fmt.Errorf("clean servers not seen since %s: %w", before.UTC().Format(time.RFC3339), err)
	}
	if _, err := s.PruneCheckins(ctx, before); err != nil {
		return int(n), err
	}
	return int(n), nil
}

// Users and tokens.

func (s *sqlStore) AddUser(ctx context.Context, u *User) error {
	switch {
	case !validName(u.Name):
		return fmt.Errorf("add user %q: %w", u.Name, ErrInvalidInput)
	case !u.Role.Valid():
		return fmt.Errorf("add user %s: role %q: %w", u.Name, u.Role, ErrInvalidInput)
	}
	if u.Created.IsZero() {
		u.Created = now()
	}
	u.Created = norm(u.Created)
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (name, password_hash, role, created) VALUES ($1, $2, $3, $4)`,
			u.Name, u.PasswordHash, u.Role, s.d.t(u.Created))
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add user %s: %w", u.Name, err)
	}
	return nil
}

func scanUser(r scanner) (User, error) {
	var u User
	err := r.Scan(&u.Name, &u.PasswordHash, &u.Role, timeCol{&u.Created})
	return u, err
}

func (s *sqlStore) User(ctx context.Context, name string) (*User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx,
		`SELECT name, password_hash, role, created FROM users WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	return &u, nil
}

func (s *sqlStore) Users(ctx context.Context) ([]User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, password_hash, role, created FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return out, nil
}

func (s *sqlStore) DeleteUser(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_name = $1`, name); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `DELETE FROM users WHERE name = $1`, name))
	})
	if err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	return nil
}

func (s *sqlStore) AddToken(ctx context.Context, t *Token) error {
	if len(t.Hash) == 0 {
		return fmt.Errorf("add token for %s: no hash: %w", t.User, ErrInvalidInput)
	}
	if t.Created.IsZero() {
		t.Created = now()
	}
	t.Created = norm(t.Created)
	err := s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE name = $1`, t.User).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %s: %w", t.User, ErrNotFound)
		}
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `INSERT INTO tokens (hash, user_name, note, created) VALUES ($1, $2, $3, $4)
RETURNING id`, t.Hash, t.User, t.Note, s.d.t(t.Created)).Scan(&t.ID)
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add token for %s: %w", t.User, err)
	}
	return nil
}

func (s *sqlStore) TokenByHash(ctx context.Context, hash []byte) (*Token, error) {
	var t Token
	err := s.r.QueryRowContext(ctx, `SELECT id, hash, user_name, note, created FROM tokens WHERE hash = $1`,
		hash).Scan(&t.ID, &t.Hash, &t.User, &t.Note, timeCol{&t.Created})
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return &t, nil
}

func (s *sqlStore) DeleteToken(ctx context.Context, id int64) error {
	n, err := s.exec(ctx, `DELETE FROM tokens WHERE id = $1`, id)
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete token %d: %w", id, err)
	}
	return nil
}

// Audit log.

func (s *sqlStore) Audit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = now()
	}
	_, err := s.exec(ctx, `INSERT INTO audit (at, actor, action, object, detail, ip, before_json, after_json)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		s.d.t(e.At), e.Actor, e.Action, e.Object, e.Detail, e.IP, e.Before, e.After)
	if err != nil {
		return fmt.Errorf("audit %s %s: %w", e.Action, e.Object, err)
	}
	return nil
}

func (s *sqlStore) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	return s.AuditQuery(ctx, AuditFilter{Limit: limit})
}

func (s *sqlStore) AuditQuery(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Actor != "" {
		where = append(where, `actor = `+arg(f.Actor))
	}
	if f.Object != "" {
		where = append(where, `object `+s.d.like+` `+arg(likeEscape(f.Object))+` ESCAPE '\'`)
	}
	if f.Action != "" {
		where = append(where, `action LIKE `+arg(strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(f.Action)+"%")+` ESCAPE '\'`)
	}
	if !f.From.IsZero() {
		where = append(where, `at >= `+arg(s.d.t(f.From)))
	}
	if !f.To.IsZero() {
		where = append(where, `at < `+arg(s.d.t(f.To)))
	}
	if f.BeforeID > 0 {
		where = append(where, `id < `+arg(f.BeforeID))
	}
	q := `SELECT id, at, actor, action, object, detail, ip, before_json, after_json FROM audit`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ` + arg(f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.ID, timeCol{&e.At}, &e.Actor, &e.Action, &e.Object, &e.Detail, &e.IP, &e.Before, &e.After); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return out, nil
}
