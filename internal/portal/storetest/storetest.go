// Package storetest opens fresh portal stores for tests of the packages
// above the store: SQLite in a temporary directory, and PostgreSQL in a
// new schema of the database KCARE_TEST_POSTGRES names.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kcare/kcare/internal/portal/store"
)

// Kinds are the backends every portal test runs on.
var Kinds = []string{"sqlite", "postgres"}

// Open returns a fresh store of kind, closed (and, for PostgreSQL, its
// schema dropped) when tb ends. Without KCARE_TEST_POSTGRES a postgres
// test is skipped, or fails when CI=true.
func Open(tb testing.TB, kind string) store.Store {
	tb.Helper()
	dir, dsn := tb.TempDir(), ""
	if kind == "postgres" {
		dsn = FreshPostgres(tb)
	}
	s, err := store.Open(context.Background(), dir, dsn)
	if err != nil {
		tb.Fatalf("open %s store: %v", kind, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// PostgresDSN returns KCARE_TEST_POSTGRES, skipping (or in CI failing)
// the test without it.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv("KCARE_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("KCARE_TEST_POSTGRES is not set (scripts/postgres-test.sh prints it)")
		}
		tb.Skip("KCARE_TEST_POSTGRES is not set; run scripts/postgres-test.sh as root for a local database")
	}
	return dsn
}

// FreshPostgres creates a schema with a random name and returns a DSN
// whose search_path is that schema; the schema is dropped at cleanup.
func FreshPostgres(tb testing.TB) string {
	tb.Helper()
	dsn := PostgresDSN(tb)
	schema := NewSchema(tb, dsn)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// NewSchema creates a randomly named schema in dsn's database, dropped
// when tb ends, and returns its name.
func NewSchema(tb testing.TB, dsn string) string {
	tb.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "kcare_test_" + hex.EncodeToString(b)
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		tb.Fatalf("create schema %s: %v", schema, err)
	}
	tb.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// BenchServers is how many servers a benchmark seeds: 1,000,000, or
// KCARE_BENCH_SERVERS (make benchsmoke sets it small).
func BenchServers(tb testing.TB) int {
	n := 1_000_000
	if v := os.Getenv("KCARE_BENCH_SERVERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			tb.Fatalf("KCARE_BENCH_SERVERS=%q: want a positive number", v)
		}
	}
	return n
}

// Replica opens another store on the PostgreSQL database dsn, with a
// data directory of its own, as a replica of eportal does; closed when
// tb ends.
func Replica(tb testing.TB, dsn string) store.Store {
	tb.Helper()
	st, err := store.Open(context.Background(), tb.TempDir(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}
