package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kcare/kcare/internal/apitype"
)

// Levels.

const levelCols = `l.id, l.build_id, l.kernel_id, l.kernel_release, l.level, l.patchset, l.channel,
	l.digest, l.size, l.signature, l.manifest, l.effective_release, l.cves, l.released, l.published`

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
	return queryAll(ctx, s.r, what, scanLevel, q, args...)
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
		if err != nil {
			return err
		}
		// Enabled for the first time: each feed with waves rolls it out.
		return startRollouts(ctx, tx, l.Patchset, `SELECT name FROM feeds WHERE auto`)
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
	return queryOne(ctx, s.r, "level with digest "+digest, scanLevel,
		`SELECT `+levelCols+` FROM levels l WHERE l.digest = $1 ORDER BY l.id LIMIT 1`, digest)
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

// AllLevels returns the levels published at or after since, oldest first.
// At, not after: a level published in the same instant as the newest one a
// mirror has seen is listed again rather than missed; the mirror skips the
// levels it has.
func (s *sqlStore) AllLevels(ctx context.Context, since time.Time) ([]Level, error) {
	if since.IsZero() {
		return s.levels(ctx, "all levels", `SELECT `+levelCols+` FROM levels l ORDER BY l.published, l.id`)
	}
	return s.levels(ctx, "levels published since "+since.UTC().Format(time.RFC3339),
		`SELECT `+levelCols+` FROM levels l WHERE l.published >= $1 ORDER BY l.published, l.id`, s.d.t(since))
}
