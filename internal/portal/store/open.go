package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/kcare/kcare/internal/portal/datadir"
)

// DBFile is the SQLite database's name in the data directory.
const DBFile = "eportal.db"

const (
	// sqliteBusyTimeout is how long SQLite waits for another process's
	// write lock before a statement fails with "database is locked".
	sqliteBusyTimeout = 10 * time.Second
	// postgresMaxConns bounds one portal's connections to PostgreSQL;
	// several replicas share the server's max_connections (100 by default).
	postgresMaxConns = 20
)

// Open opens the portal's store: SQLite in dataDir when dsn is empty,
// else the PostgreSQL database dsn names. It migrates the schema.
func Open(ctx context.Context, dataDir, dsn string) (Store, error) {
	if dsn != "" {
		return OpenPostgres(ctx, dsn)
	}
	if err := datadir.MkdirAll(dataDir); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return OpenSQLite(ctx, filepath.Join(dataDir, DBFile))
}

// OpenSQLite opens (creating if needed) the SQLite database at path and
// migrates its schema. It runs in WAL mode with foreign keys on; all
// writes go through one connection in BEGIN IMMEDIATE transactions, so
// writers in this process queue instead of failing, and reads use a pool
// of query-only connections that never wait for the writer.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite %q: %w", path, ErrInvalidInput)
	}
	// SQLite would make a new database 0644 and its -wal and -shm files
	// like it: make it private first.
	f, err := datadir.OpenFile(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	f.Close()
	// Two processes opening a new database at once can meet on the switch
	// to WAL, where SQLite answers busy at once instead of waiting: try
	// again, for up to openBusyBound.
	deadline := time.Now().Add(openBusyBound)
	for pause := 10 * time.Millisecond; ; pause *= 2 {
		st, err := openSQLite(ctx, path)
		if err == nil || !isRetryable(err) || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(pause, time.Second)):
		}
	}
}

// openBusyBound bounds OpenSQLite's retries of a busy database.
const openBusyBound = 30 * time.Second

func openSQLite(ctx context.Context, path string) (Store, error) {
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)",
		sqliteBusyTimeout.Milliseconds())
	// busy_timeout comes first: switching to WAL takes a lock that another
	// process opening the database at the same moment may hold.
	w, err := sql.Open("sqlite", path+"?_txlock=immediate&"+common+"&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := migrate(ctx, w, sqliteDialect); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?_pragma=query_only(1)&"+common)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	return &sqlStore{d: sqliteDialect, w: w, r: r}, nil
}

// OpenPostgres connects to the PostgreSQL database dsn names (a URL or
// key=value string as libpq takes; a search_path parameter selects the
// schema) and migrates its schema.
func OpenPostgres(ctx context.Context, dsn string) (Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(postgresMaxConns)
	db.SetMaxIdleConns(postgresMaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	where := fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres %s: %w", where, err)
	}
	if err := migrate(ctx, db, postgresDialect); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres %s: %w", where, err)
	}
	st := &sqlStore{d: postgresDialect, w: db, r: db}
	if err := st.ensureSearchIndex(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres %s: %w", where, err)
	}
	return st, nil
}

// ensureSearchIndex gives PostgreSQL's servers a trigram index of their
// hostnames, addresses and tags (pg_trgm), for substring search: made
// once, when the extension is installed or this role may install it (in
// the public schema, where a schema dropped later cannot take it away).
// Without it, search reads the servers; Notes says so.
func (s *sqlStore) ensureSearchIndex(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('kcare.pg_trgm'))`); err != nil {
		return fmt.Errorf("search index: lock: %w", err)
	}
	var schema string
	err = tx.QueryRowContext(ctx, `SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_trgm'`).Scan(&schema)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := tx.ExecContext(ctx, `SAVEPOINT trgm`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public`); err != nil {
			s.notes = append(s.notes, fmt.Sprintf("no trigram index for server search (%v): a database owner can run CREATE EXTENSION pg_trgm; until then a search reads every server", err))
			return nil
		}
		schema = "public"
	} else if err != nil {
		return fmt.Errorf("search index: %w", err)
	}
	var have bool
	if err := tx.QueryRowContext(ctx, `SELECT to_regclass('servers_search_trgm') IS NOT NULL`).Scan(&have); err != nil {
		return fmt.Errorf("search index: %w", err)
	}
	if !have {
		ops := pgx.Identifier{schema, "gin_trgm_ops"}.Sanitize()
		if _, err := tx.ExecContext(ctx, `CREATE INDEX servers_search_trgm ON servers USING gin (hostname `+ops+`, ip `+ops+`, tags `+ops+`)`); err != nil {
			return fmt.Errorf("search index: %w", err)
		}
	}
	return tx.Commit()
}
