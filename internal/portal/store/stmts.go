package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// stmtCache holds the prepared statements of the agents' hot path, so
// that SQLite parses and plans each of them once per connection rather
// than once a request. (PostgreSQL's driver keeps prepared statements of
// its own for every query.) Only fixed query texts go in: a statement
// is kept until the store closes.
type stmtCache struct {
	mu sync.Mutex
	m  map[stmtKey]*sql.Stmt
}

type stmtKey struct {
	db *sql.DB
	q  string
}

// prepared returns q prepared on db, preparing it on first use.
func (c *stmtCache) prepared(db *sql.DB, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := stmtKey{db, q}
	if st, ok := c.m[k]; ok {
		return st, nil
	}
	// Not the request's context: the statement outlives it.
	st, err := db.PrepareContext(context.Background(), q)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if c.m == nil {
		c.m = map[stmtKey]*sql.Stmt{}
	}
	c.m[k] = st
	return st, nil
}

// close closes every statement.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for k, st := range c.m {
		errs = append(errs, st.Close())
		delete(c.m, k)
	}
	return errors.Join(errs...)
}

// hotRow runs a query of the hot path on db and returns its one row:
// from a prepared statement on SQLite, as a plain query on PostgreSQL.
func (s *sqlStore) hotRow(ctx context.Context, db *sql.DB, q string, args ...any) *sql.Row {
	if s.d.name != "sqlite" {
		return db.QueryRowContext(ctx, q, args...)
	}
	st, err := s.stmts.prepared(db, q)
	if err != nil {
		// The query itself fails the same way, and says so.
		return db.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// lookup returns q as prepared on db by an earlier prepared call, or nil.
func (c *stmtCache) lookup(db *sql.DB, q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[stmtKey{db, q}]
}

// prepareWrites prepares statements of the hot path on the writer, on
// SQLite. It must run outside a transaction: SQLite's writer is one
// connection, which a transaction holds.
func (s *sqlStore) prepareWrites(qs ...string) {
	if s.d.name != "sqlite" {
		return
	}
	for _, q := range qs {
		s.stmts.prepared(s.w, q) // on failure hotExec runs q unprepared
	}
}

// hotExec runs a statement of the hot path in tx: prepared, when
// prepareWrites prepared it, else plain.
func (s *sqlStore) hotExec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st := s.stmts.lookup(s.w, q); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}
