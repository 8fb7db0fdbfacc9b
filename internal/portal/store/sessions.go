package store

import (
	"context"
	"fmt"
	"time"
)

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
	return queryOne(ctx, s.r, "session", func(r scanner) (v Session, err error) {
		return v, r.Scan(&v.IDHash, &v.User, timeCol{&v.Created}, timeCol{&v.LastSeen}, &v.CSRF, &v.IP)
	}, `SELECT id_hash, user_name, created, last_seen, csrf, ip FROM sessions WHERE id_hash = $1`, idHash)
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
