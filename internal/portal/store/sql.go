package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kcare/kcare/internal/apitype"
)

// sqlStore is Store on database/sql, for both backends; d holds what
// differs between them.
type sqlStore struct {
	d dialect
	w *sql.DB // writes; for SQLite its one writer connection
	r *sql.DB // reads; for SQLite a pool of query-only connections, for PostgreSQL w

	stmts   stmtCache // the hot path's prepared statements
	commits committer // the group commit of check-ins
	notes   []string  // what Open could not set up, for Notes
}

// Notes are what opening the store could not set up as it would have
// liked, for the log: the store works without them, slower.
func (s *sqlStore) Notes() []string { return s.notes }

// writeAttempts bounds how often a transaction that failed with a
// retryable error (isRetryable) is run: SQLite's busy timeout already
// waited inside each attempt.
const writeAttempts = 8

func (s *sqlStore) Close() error {
	s.commits.stop()
	err := errors.Join(s.stmts.close(), s.w.Close())
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

// scanner is one row of a result: a *sql.Row or the current row of
// *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// queryAll runs query on the read pool and scans each row of its result
// with scan, in order; what names the query in errors.
func queryAll[T any](ctx context.Context, db *sql.DB, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// queryOne runs query on the read pool and scans the one row of its
// result with scan; no row is ErrNotFound.
func queryOne[T any](ctx context.Context, db *sql.DB, what string, scan func(scanner) (T, error), query string, args ...any) (*T, error) {
	v, err := scan(db.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return &v, nil
}
