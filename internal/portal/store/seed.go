package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kcare/kcare/internal/apitype"
)

// seedKernel is a kernel the seeded servers run.
type seedKernel struct {
	release, buildID, kernelID string
}

// seedKernels are the kernels SeedServers spreads its servers over.
var seedKernels = []seedKernel{
	{"6.1.0-56-amd64", "eb4fbcd037e7253717950bf2b93bd5566f47c56f", "2f2b3c6a5a0e3d6e8c1b9f3e7d4a5b6c7d8e9f01"},
	{"6.1.0-55-amd64", "7c1d0e5f7a3b9c2d4e6f8a0b1c3d5e7f9a2b4c6d", "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"},
	{"5.15.0-76-generic", "0f9e8d7c6b5a49382716059483726150fedcba98", "1234567890abcdef1234567890abcdef12345678"},
	{"6.8.0-60-generic", "3b5d7f9a1c2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a", "fedcba0987654321fedcba0987654321fedcba09"},
}

// seedTags are the tags seeded servers carry, by i%len(seedTags).
var seedTags = func() []string {
	var tags []string
	for i := range 120 {
		tags = append(tags, fmt.Sprintf("env:%s;rack:r%02d", [...]string{"prod", "staging", "dev"}[i%3], i%40))
	}
	return tags
}()

// pad7 appends i in decimal, zero-padded to seven digits.
func pad7(b []byte, i int) []byte {
	var d [20]byte
	n := strconv.AppendInt(d[:0], int64(i), 10)
	for k := len(n); k < 7; k++ {
		b = append(b, '0')
	}
	return append(b, n...)
}

// seedServer is the i-th of n servers SeedServers makes, registered at
// one-second steps up to t0; one in 50 never checked in, the others
// checked in within the last week.
func seedServer(prefix, key string, i, n int, t0 time.Time) Server {
	k := seedKernels[i%len(seedKernels)]
	buf := make([]byte, 0, 64)
	buf = pad7(append(buf, prefix...), i)
	secret := sha256.Sum256(buf)
	id := string(buf)
	host := string(append(pad7(append(buf[:0], "node-"...), i), ".example.net"...))
	ip := buf[:0]
	for _, o := range [...]int{10, i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff} {
		ip = append(strconv.AppendInt(ip, int64(o), 10), '.')
	}
	v := Server{
		ID:               id,
		SecretHash:       secret[:],
		Key:              key,
		Hostname:         host,
		IP:               string(ip[:len(ip)-1]),
		Release:          k.release,
		BuildID:          k.buildID,
		KernelID:         k.kernelID,
		Level:            i % 4,
		EffectiveRelease: k.release,
		LastResult:       "ok",
		AgentVersion:     "1.0.0",
		Tags:             seedTags[i%len(seedTags)],
		Registered:       norm(t0.Add(-time.Duration(n-i) * time.Second)),
	}
	if i%50 != 0 {
		v.LastCheckin = norm(t0.Add(-time.Duration(i%(7*24*60)) * time.Minute))
	}
	return v
}

// seeder is a Store that can add many servers at once.
type seeder interface {
	seedServers(ctx context.Context, key string, n int) error
}

// SeedServers adds n made-up servers under key, for load tests and
// benchmarks: hostnames node-0000000.example.net on, addresses in
// 10.0.0.0/8, kernels from a small set of Debian and Ubuntu releases.
// It ignores the key's server limit and IP ranges. The SQLite and
// PostgreSQL stores add them in one transaction (batched INSERTs, COPY);
// any other Store gets them through Register.
func SeedServers(ctx context.Context, s Store, key string, n int) error {
	if sd, ok := s.(seeder); ok {
		if err := sd.seedServers(ctx, key, n); err != nil {
			return fmt.Errorf("seed %d servers under key %s: %w", n, key, err)
		}
		return nil
	}
	prefix, t0 := seedPrefix(), now()
	for i := range n {
		v := seedServer(prefix, key, i, n, t0)
		if err := s.Register(ctx, key, &v); err != nil {
			return fmt.Errorf("seed %d servers under key %s: %w", n, key, err)
		}
	}
	return nil
}

// seedPrefix starts the ids of one SeedServers call's servers, so calls
// do not collide.
func seedPrefix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "seed-" + hex.EncodeToString(b) + "-"
}

// seedBatch is how many rows one SQLite INSERT carries (16 parameters
// each, well below SQLite's 32766).
const seedBatch = 500

// bulkRows is how many rows a seed must add, and at least how many the
// table may hold already, for it to drop the servers table's secondary
// indexes and foreign keys and make them again afterwards: several times
// faster than keeping them up to date row by row. The table stays
// locked until the seed's transaction ends.
var bulkRows = 50_000

// rebuild is an index or constraint of the servers table that a bulk
// load drops first and makes again at the end.
type rebuild struct{ name, drop, create string }

const (
	// The triggers (server counts, the search index) go too, and what
	// they keep is made again at the end of the load: sqliteAfterLoad.
	sqliteRebuild = `SELECT name, 'DROP ' || upper(type) || ' "' || name || '"', sql FROM sqlite_master
WHERE type IN ('index', 'trigger') AND tbl_name = 'servers' AND sql IS NOT NULL ORDER BY type, name`
	// Only this schema's servers table: no cast of other schemas' index
	// names, which another store may be dropping at the same moment.
	postgresRebuild = `SELECT ic.relname, 'DROP INDEX ' || quote_ident(ic.relname), pg_get_indexdef(x.indexrelid)
FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
WHERE x.indrelid = 'servers'::regclass AND NOT x.indisprimary AND NOT x.indisunique
UNION ALL
SELECT c.conname, 'ALTER TABLE servers DROP CONSTRAINT ' || quote_ident(c.conname),
	'ALTER TABLE servers ADD CONSTRAINT ' || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid)
FROM pg_constraint c WHERE c.conrelid = 'servers'::regclass AND c.contype = 'f'`
)

// rowScanner is what database/sql's and pgx's rows have in common.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

func scanRebuilds(rows rowScanner) ([]rebuild, error) {
	var out []rebuild
	for rows.Next() {
		var r rebuild
		if err := rows.Scan(&r.name, &r.drop, &r.create); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// bulk reports whether adding n rows to a table of have is a bulk load.
func bulk(n, have int) bool { return n >= bulkRows && have <= n }

// bulkLoad runs load, which adds n rows to a table of have, inside
// dropping and making again what list returns when that pays off.
func bulkLoad(n, have int, list func() ([]rebuild, error), exec func(q string) error, load func() error) error {
	var plan []rebuild
	if bulk(n, have) {
		var err error
		if plan, err = list(); err != nil {
			return fmt.Errorf("list indexes: %w", err)
		}
		for _, r := range plan {
			if err := exec(r.drop); err != nil {
				return fmt.Errorf("drop %s: %w", r.name, err)
			}
		}
	}
	if err := load(); err != nil {
		return err
	}
	for _, r := range plan {
		if err := exec(r.create); err != nil {
			return fmt.Errorf("make %s again: %w", r.name, err)
		}
	}
	return nil
}

func (s *sqlStore) seedServers(ctx context.Context, key string, n int) error {
	if s.d.name == "postgres" {
		return s.copyServers(ctx, key, n)
	}
	prefix, t0 := seedPrefix(), now()
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", 16), ",") + ")"
	head, _, _ := strings.Cut(insertServer, "VALUES")
	stmt := func(rows int) string {
		return head + "VALUES " + strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var have int
		if err := keyExists(ctx, tx, key); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM servers`).Scan(&have); err != nil {
			return err
		}
		if n >= bulkRows {
			// A page cache of 256 MiB for the load and the index builds,
			// back to the default when done.
			if _, err := tx.ExecContext(ctx, `PRAGMA cache_size = -262144`); err != nil {
				return err
			}
			defer tx.ExecContext(ctx, `PRAGMA cache_size = -2000`)
		}
		list := func() ([]rebuild, error) {
			rows, err := tx.QueryContext(ctx, sqliteRebuild)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			return scanRebuilds(rows)
		}
		exec := func(q string) error {
			_, err := tx.ExecContext(ctx, q)
			return err
		}
		err := bulkLoad(n, have, list, exec, func() error {
			full, err := tx.PrepareContext(ctx, stmt(seedBatch))
			if err != nil {
				return err
			}
			defer full.Close()
			args := make([]any, 0, 16*seedBatch)
			for i := 0; i < n; i += seedBatch {
				args = args[:0]
				rows := min(seedBatch, n-i)
				for j := range rows {
					v := seedServer(prefix, key, i+j, n, t0)
					args = append(args, s.serverArgs(&v, "")...)
				}
				if rows == seedBatch {
					_, err = full.ExecContext(ctx, args...)
				} else {
					_, err = tx.ExecContext(ctx, stmt(rows), args...)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || !bulk(n, have) {
			return err
		}
		for _, q := range sqliteAfterLoad {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("after the load: %w", err)
			}
		}
		return nil
	})
}

// sqliteAfterLoad makes again what the triggers a bulk load dropped keep:
// the keys' server counts and the search index.
var sqliteAfterLoad = []string{
	`UPDATE keys SET server_count = (SELECT COUNT(*) FROM servers s WHERE s.key = keys.key)`,
	`INSERT INTO servers_search (servers_search) VALUES ('rebuild')`,
}

func keyExists(ctx context.Context, q queryer, key string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM keys WHERE key = $1`, key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrInvalidKey
	}
	return err
}

// copyServers seeds PostgreSQL with COPY, in one transaction.
func (s *sqlStore) copyServers(ctx context.Context, key string, n int) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	prefix, t0 := seedPrefix(), now()
	cols := []string{"id", "secret_hash", "key", "ip_feed", "hostname", "ip", "kernel_release",
		"build_id", "kernel_id", "level", "effective_release", "last_result", "agent_version", "tags",
		"registered", "last_checkin"}
	return conn.Raw(func(dc any) error {
		tx, err := dc.(*stdlib.Conn).Conn().Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		var one, have int
		err = tx.QueryRow(ctx, `SELECT 1 FROM keys WHERE key = $1`, key).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrInvalidKey
		}
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM servers`).Scan(&have); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL maintenance_work_mem = '256MB'`); err != nil {
			return err
		}
		list := func() ([]rebuild, error) {
			rows, err := tx.Query(ctx, postgresRebuild)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			return scanRebuilds(rows)
		}
		exec := func(q string) error {
			_, err := tx.Exec(ctx, q)
			return err
		}
		err = bulkLoad(n, have, list, exec, func() error {
			i := 0
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"servers"}, cols, pgx.CopyFromFunc(func() ([]any, error) {
				if i == n {
					return nil, nil
				}
				v := seedServer(prefix, key, i, n, t0)
				i++
				return s.serverArgs(&v, ""), nil
			}))
			return err
		})
		if err != nil {
			return err
		}
		// Statistics for the planner now, rather than when autovacuum
		// gets to the table.
		if _, err := tx.Exec(ctx, `ANALYZE servers`); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
}

// SeedLevels publishes, for load tests and benchmarks, three levels of
// each kernel SeedServers spreads its servers over: levels 1 and 2 in
// the stable channel, released three days and a day before now, and level
// 3 in the test channel, released an hour before now. Servers seeded at
// levels 0 to 3 are then up to date, out of date or ahead.
func SeedLevels(ctx context.Context, s LevelStore) error {
	t := now()
	for _, k := range seedKernels {
		for lv, back := range map[int]time.Duration{1: 72 * time.Hour, 2: 24 * time.Hour, 3: time.Hour} {
			ch := apitype.ChannelStable
			if lv == 3 {
				ch = apitype.ChannelTest
			}
			rel := t.Add(-back)
			sum := sha256.Sum256(fmt.Appendf(nil, "seed level %s/%d", k.buildID, lv))
			l := &Level{BuildID: k.buildID, KernelID: k.kernelID, Release: k.release, Level: lv,
				Patchset: "K" + rel.Format("20060102") + "_01", Channel: ch, Digest: hex.EncodeToString(sum[:]),
				Size: 262144, EffectiveRelease: k.release, Released: rel}
			if err := s.AddLevel(ctx, l); err != nil {
				return fmt.Errorf("seed levels: %w", err)
			}
		}
	}
	return nil
}
