package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// backend makes fresh, empty databases of one kind for tests.
type backend struct {
	name string
	// fresh returns the Open arguments of a new empty database that is
	// removed when tb ends.
	fresh func(tb testing.TB) (dataDir, dsn string)
}

// backends are SQLite and, when KCARE_TEST_POSTGRES names a database,
// PostgreSQL (a fresh schema in it for every fresh database).
var backends = []backend{
	{name: "sqlite", fresh: freshSQLite},
	{name: "postgres", fresh: freshPostgres},
}

func freshSQLite(tb testing.TB) (string, string) { return tb.TempDir(), "" }

// postgresDSN returns KCARE_TEST_POSTGRES; without it the test is
// skipped, or fails under CI, which must run both backends.
func postgresDSN(tb testing.TB) string {
	dsn := os.Getenv("KCARE_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("KCARE_TEST_POSTGRES is not set (scripts/postgres-test.sh prints it)")
		}
		tb.Skip("KCARE_TEST_POSTGRES is not set; run scripts/postgres-test.sh as root for a local database")
	}
	return dsn
}

// freshPostgres creates a schema with a random name and returns a DSN
// whose search_path is that schema; the schema is dropped at cleanup.
func freshPostgres(tb testing.TB) (string, string) {
	dsn := postgresDSN(tb)
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "kcare_test_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect to KCARE_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema %s: %v", schema, err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	if strings.Contains(dsn, "://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return "", dsn + sep + "search_path=" + schema
	}
	return "", dsn + " search_path=" + schema
}

// open opens a fresh database of b, closed when tb ends.
func (b backend) open(tb testing.TB) Store {
	tb.Helper()
	dir, dsn := b.fresh(tb)
	return openAt(tb, dir, dsn)
}

func openAt(tb testing.TB, dir, dsn string) Store {
	tb.Helper()
	s, err := Open(context.Background(), dir, dsn)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
