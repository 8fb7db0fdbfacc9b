package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"
)

// What replicas of one portal share through the database: bundles,
// secrets, the web UI's failed sign-ins, and locks.

// blobChunk is the size of one stored chunk of a bundle: a bundle is read
// and written a chunk at a time, never whole in one value.
const blobChunk = 1 << 20

func (s *sqlStore) PutBlob(ctx context.Context, d string, data []byte) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO blobs (digest, size, added) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING`,
			d, len(data), s.d.t(now()))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // stored already
		}
		for i := 0; i*blobChunk < len(data); i++ {
			chunk := data[i*blobChunk : min((i+1)*blobChunk, len(data))]
			if _, err := tx.ExecContext(ctx, `INSERT INTO blob_chunks (digest, n, data) VALUES ($1, $2, $3)`, d, i, chunk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	return nil
}

func (s *sqlStore) HasBlob(ctx context.Context, d string) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM blobs WHERE digest = $1`, d).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", d, err)
	}
	return true, nil
}

func (s *sqlStore) ReadBlob(ctx context.Context, d string, w io.Writer) (int64, error) {
	var size int64
	err := s.r.QueryRowContext(ctx, `SELECT size FROM blobs WHERE digest = $1`, d).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", d, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT n, data FROM blob_chunks WHERE digest = $1 ORDER BY n`, d)
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", d, err)
	}
	defer rows.Close()
	var written int64
	for want := 0; rows.Next(); want++ {
		var n int
		var chunk []byte
		if err := rows.Scan(&n, &chunk); err != nil {
			return written, fmt.Errorf("blob %s: %w", d, err)
		}
		if n != want {
			return written, fmt.Errorf("blob %s: chunk %d missing", d, want)
		}
		m, err := w.Write(chunk)
		written += int64(m)
		if err != nil {
			return written, err
		}
	}
	if err := rows.Err(); err != nil {
		return written, fmt.Errorf("blob %s: %w", d, err)
	}
	if written != size {
		return written, fmt.Errorf("blob %s: %d bytes stored of %d", d, written, size)
	}
	return written, nil
}

func (s *sqlStore) Secret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT value FROM portal_secrets WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("secret %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return v, nil
}

func (s *sqlStore) AddSecret(ctx context.Context, name string, value []byte) ([]byte, error) {
	var stored []byte
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO portal_secrets (name, value, created) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
			name, value, s.d.t(now()))
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM portal_secrets WHERE name = $1`, name).Scan(&stored)
	})
	if err != nil {
		return nil, fmt.Errorf("add secret %s: %w", name, err)
	}
	return stored, nil
}

func (s *sqlStore) SignInFailures(ctx context.Context, keys ...[]byte) ([]SignInFailure, error) {
	var out []SignInFailure
	for _, k := range keys {
		f := SignInFailure{Key: k}
		err := s.r.QueryRowContext(ctx, `SELECT n, until_at, last_at FROM signin_failures WHERE key = $1`, k).
			Scan(&f.N, timeCol{&f.Until}, timeCol{&f.Last})
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("failed sign-ins: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}

func (s *sqlStore) CountSignInFailure(ctx context.Context, count func(f *SignInFailure), keys ...[]byte) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			f := SignInFailure{Key: k}
			err := tx.QueryRowContext(ctx, `SELECT n, until_at, last_at FROM signin_failures WHERE key = $1`+s.d.forUpdate, k).
				Scan(&f.N, timeCol{&f.Until}, timeCol{&f.Last})
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			count(&f)
			_, err = tx.ExecContext(ctx, `INSERT INTO signin_failures (key, n, until_at, last_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (key) DO UPDATE SET n = excluded.n, until_at = excluded.until_at, last_at = excluded.last_at`,
				k, f.N, s.d.t(f.Until), s.d.t(f.Last))
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("count a failed sign-in: %w", err)
	}
	return nil
}

func (s *sqlStore) ForgetSignInFailures(ctx context.Context, key []byte, before time.Time) error {
	_, err := s.exec(ctx, `DELETE FROM signin_failures WHERE key = $1 OR last_at < $2`, key, s.d.t(before))
	if err != nil {
		return fmt.Errorf("forget failed sign-ins: %w", err)
	}
	return nil
}

// TryLock takes the lock name among the replicas on one PostgreSQL (a
// session advisory lock, per schema, held on a connection of its own and
// let go when the replica's connection ends, however it ends). On SQLite,
// one portal, it always succeeds.
func (s *sqlStore) TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error) {
	if s.d.name != "postgres" {
		return func() {}, true, nil
	}
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	const key = `hashtext('kcare.lock.' || current_schema() || '.' || $1)`
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(`+key+`)`, name).Scan(&ok); err != nil || !ok {
		conn.Close()
		if err != nil {
			err = fmt.Errorf("lock %s: %w", name, err)
		}
		return nil, false, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn.ExecContext(ctx, `SELECT pg_advisory_unlock(`+key+`)`, name)
		conn.Close()
	}, true, nil
}
