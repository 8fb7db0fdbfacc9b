package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// What the web UI reads and keeps beside the fleet: API token lists, the
// check-in history, fleet counts, kernels, and sessions.

func (s *sqlStore) Tokens(ctx context.Context, user string) ([]Token, error) {
	q, args := `SELECT id, hash, user_name, note, created FROM tokens`, []any{}
	if user != "" {
		q += ` WHERE user_name = $1`
		args = append(args, user)
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		if err := rows.Scan(&t.ID, &t.Hash, &t.User, &t.Note, timeCol{&t.Created}); err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *sqlStore) CheckinHistory(ctx context.Context, serverID string, limit int) ([]Checkin, error) {
	q := `SELECT server_id, at, level, effective_release, result FROM checkins WHERE server_id = $1 ORDER BY id DESC`
	args := []any{serverID}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("check-in history of %s: %w", serverID, err)
	}
	defer rows.Close()
	var out []Checkin
	for rows.Next() {
		var c Checkin
		if err := rows.Scan(&c.ServerID, timeCol{&c.At}, &c.Level, &c.EffectiveRelease, &c.Result); err != nil {
			return nil, fmt.Errorf("check-in history of %s: %w", serverID, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *sqlStore) PruneCheckins(ctx context.Context, before time.Time) (int, error) {
	var total int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM checkins WHERE at < $1`, s.d.t(before))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		total += n
		res, err = tx.ExecContext(ctx, `DELETE FROM checkins WHERE id IN (
	SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY server_id ORDER BY id DESC) AS rn FROM checkins) r
	WHERE r.rn > `+strconv.Itoa(CheckinHistoryKeep)+`)`)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		total += n
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune check-in history: %w", err)
	}
	return int(total), nil
}

func (s *sqlStore) Stats(ctx context.Context, now time.Time, age time.Duration) (FleetStats, error) {
	var st FleetStats
	cut := s.d.t(now.Add(-age))
	err := s.r.QueryRowContext(ctx, `WITH nv AS (`+newestVisible+`),
known AS (SELECT DISTINCT build_id FROM levels)
SELECT COUNT(*),
	COALESCE(SUM(CASE WHEN s.last_checkin >= $1 THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN s.last_checkin >= $1 AND kn.build_id IS NULL THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN s.last_checkin >= $1 AND kn.build_id IS NOT NULL AND s.level < COALESCE(nv.level, -1) THEN 1 ELSE 0 END), 0)
FROM servers s
LEFT JOIN keys k ON k.key = s.key
LEFT JOIN nv ON nv.feed = `+serverFeed+` AND nv.build_id = s.build_id
LEFT JOIN known kn ON kn.build_id = s.build_id`, cut).Scan(&st.Total, &st.Active, &st.Unsupported, &st.OutOfDate)
	if err != nil {
		return st, fmt.Errorf("fleet stats: %w", err)
	}
	st.Inactive = st.Total - st.Active
	st.UpToDate = st.Active - st.Unsupported - st.OutOfDate
	return st, nil
}

func (s *sqlStore) counts(ctx context.Context, col string, limit int) ([]Count, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+col+`, COUNT(*) AS n FROM servers
WHERE `+col+` <> '' GROUP BY `+col+` ORDER BY n DESC, `+col+` LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Count
	for rows.Next() {
		var c Count
		if err := rows.Scan(&c.Value, &c.N); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *sqlStore) TopKernels(ctx context.Context, limit int) ([]Count, []Count, error) {
	k, err := s.counts(ctx, "kernel_release", limit)
	if err != nil {
		return nil, nil, fmt.Errorf("top kernels: %w", err)
	}
	e, err := s.counts(ctx, "effective_release", limit)
	if err != nil {
		return nil, nil, fmt.Errorf("top effective kernels: %w", err)
	}
	return k, e, nil
}

func (s *sqlStore) Kernels(ctx context.Context) ([]Kernel, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT build_id, MAX(kernel_release), MAX(kernel_id), COUNT(*), MAX(level)
FROM levels GROUP BY build_id ORDER BY MAX(kernel_release), build_id`)
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	defer rows.Close()
	var out []Kernel
	for rows.Next() {
		var k Kernel
		if err := rows.Scan(&k.BuildID, &k.Release, &k.KernelID, &k.Levels, &k.Newest); err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Sessions.

func (s *sqlStore) AddSession(ctx context.Context, v *Session) error {
	if len(v.IDHash) == 0 || v.CSRF == "" {
		return fmt.Errorf("add session: no id or CSRF token: %w", ErrInvalidInput)
	}
	if v.Created.IsZero() {
		v.Created = now()
	}
	if v.LastSeen.IsZero() {
		v.LastSeen = v.Created
	}
	v.Created, v.LastSeen = norm(v.Created), norm(v.LastSeen)
	_, err := s.exec(ctx, `INSERT INTO sessions (id_hash, user_name, created, last_seen, csrf, ip) VALUES ($1, $2, $3, $4, $5, $6)`,
		v.IDHash, v.User, s.d.t(v.Created), s.d.t(v.LastSeen), v.CSRF, v.IP)
	switch {
	case isForeignKey(err):
		err = fmt.Errorf("user %s: %w", v.User, ErrNotFound)
	case isUnique(err):
		err = ErrExists
	}
	if err != nil {
		return fmt.Errorf("add session of %s: %w", v.User, err)
	}
	return nil
}

func (s *sqlStore) Session(ctx context.Context, idHash []byte) (*Session, error) {
	var v Session
	err := s.r.QueryRowContext(ctx, `SELECT id_hash, user_name, created, last_seen, csrf, ip FROM sessions WHERE id_hash = $1`,
		idHash).Scan(&v.IDHash, &v.User, timeCol{&v.Created}, timeCol{&v.LastSeen}, &v.CSRF, &v.IP)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return &v, nil
}

func (s *sqlStore) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	n, err := s.exec(ctx, `UPDATE sessions SET last_seen = $2 WHERE id_hash = $1`, idHash, s.d.t(at))
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

func (s *sqlStore) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := s.exec(ctx, `DELETE FROM sessions WHERE id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func (s *sqlStore) DeleteSessions(ctx context.Context, before time.Time) (int, error) {
	n, err := s.exec(ctx, `DELETE FROM sessions WHERE last_seen < $1`, s.d.t(before))
	if err != nil {
		return 0, fmt.Errorf("delete old sessions: %w", err)
	}
	return int(n), nil
}
