package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kcare/kcare/internal/apitype"
)

// Patchsets and feeds.

func (s *sqlStore) Patchsets(ctx context.Context) ([]Patchset, error) {
	return queryAll(ctx, s.r, "patchsets", func(r scanner) (p Patchset, err error) {
		return p, r.Scan(&p.Name, timeCol{&p.Released}, &p.Levels, &p.Urgent)
	}, `SELECT p.name, p.released, COUNT(l.id), p.urgent FROM patchsets p
LEFT JOIN levels l ON l.patchset = p.name
GROUP BY p.name, p.released, p.urgent ORDER BY p.released, p.name`)
}

func (s *sqlStore) FeedPatchsets(ctx context.Context, feed string) ([]FeedPatchset, error) {
	if _, err := feedChannel(ctx, s.r, feed); err != nil {
		return nil, fmt.Errorf("patchsets of feed: %w", err)
	}
	return queryAll(ctx, s.r, "patchsets of feed "+feed, func(r scanner) (FeedPatchset, error) {
		p := FeedPatchset{Feed: feed}
		return p, r.Scan(&p.Patchset, timeCol{&p.Released}, &p.Enabled, &p.Deployed, &p.Urgent)
	}, `SELECT p.name, p.released, COALESCE(fp.enabled, FALSE), fp.patchset IS NOT NULL, p.urgent FROM patchsets p
LEFT JOIN feed_patchsets fp ON fp.patchset = p.name AND fp.feed = $1
ORDER BY p.released, p.name`, feed)
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
			var deployed bool
			err = tx.QueryRowContext(ctx, `SELECT COUNT(*) > 0 FROM feed_patchsets WHERE feed = $1 AND patchset = $2`, feed, p).Scan(&deployed)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO feed_patchsets (feed, patchset, enabled) VALUES ($1, $2, $3)
ON CONFLICT (feed, patchset) DO UPDATE SET enabled = excluded.enabled`, feed, p, enabled)
			if err != nil {
				return err
			}
			if enabled && !deployed {
				// Enabled in the feed for the first time: with waves, it
				// rolls out.
				if err := startRollouts(ctx, tx, p, `$2`, feed); err != nil {
					return err
				}
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
	return queryOne(ctx, s.r, "feed "+name, scanFeed, `SELECT `+feedCols+` FROM feeds WHERE name = $1`, name)
}

func (s *sqlStore) Feeds(ctx context.Context) ([]Feed, error) {
	out, err := queryAll(ctx, s.r, "feeds", scanFeed, `SELECT `+feedCols+` FROM feeds`)
	SortFeeds(out)
	return out, err
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
