package store

import (
	"context"
	"time"
)

// LevelLister is a Store that can list every level published after a
// time: what a mirror fetches from its upstream and an export packs. The
// SQLite and PostgreSQL stores are LevelListers.
type LevelLister interface {
	AllLevels(ctx context.Context, since time.Time) ([]Level, error)
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
