package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/kcare/kcare/internal/config"
)

// migration is one step of the schema. sql is for both backends, with
// {{time}}, {{bool}}, {{bytes}}, {{id}} and {{now}} filled per dialect;
// sqlite and postgres, when set, replace it for that backend.
type migration struct {
	sql, sqlite, postgres string
	// fill, when set, runs after the SQL in the same transaction, to fill
	// what the SQL added from what only Go can compute.
	fill func(ctx context.Context, tx *sql.Tx, d dialect) error
}

func (m migration) text(d dialect) string {
	switch {
	case d.name == "sqlite" && m.sqlite != "":
		return d.expand(m.sqlite)
	case d.name == "postgres" && m.postgres != "":
		return d.expand(m.postgres)
	}
	return d.expand(m.sql)
}

// migrations are applied in order; migration i+1 is schema version i+1.
// Never edit one that has shipped: append another.
var migrations = []migration{
	{sql: `
CREATE TABLE store_version (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	n BIGINT NOT NULL
);
INSERT INTO store_version (id, n) VALUES (1, 1);

CREATE TABLE patchsets (
	name TEXT PRIMARY KEY,
	released {{time}} NOT NULL
);

CREATE TABLE levels (
	id {{id}},
	build_id TEXT NOT NULL,
	kernel_id TEXT NOT NULL,
	kernel_release TEXT NOT NULL,
	level INTEGER NOT NULL,
	patchset TEXT NOT NULL REFERENCES patchsets (name),
	channel TEXT NOT NULL,
	digest TEXT NOT NULL,
	size BIGINT NOT NULL,
	signature {{bytes}},
	manifest {{bytes}},
	effective_release TEXT NOT NULL,
	cves TEXT NOT NULL,
	released {{time}} NOT NULL,
	published {{time}} NOT NULL,
	UNIQUE (build_id, level)
);
CREATE INDEX levels_kernel_id ON levels (kernel_id);
CREATE INDEX levels_digest ON levels (digest);
CREATE INDEX levels_patchset ON levels (patchset);

CREATE TABLE feeds (
	name TEXT PRIMARY KEY,
	channel TEXT NOT NULL,
	deploy_after BIGINT NOT NULL,
	auto {{bool}} NOT NULL,
	created {{time}} NOT NULL
);
INSERT INTO feeds (name, channel, deploy_after, auto, created)
	VALUES ('main', 'stable', 0, TRUE, {{now}});

CREATE TABLE feed_patchsets (
	feed TEXT NOT NULL REFERENCES feeds (name) ON DELETE CASCADE,
	patchset TEXT NOT NULL REFERENCES patchsets (name) ON DELETE CASCADE,
	enabled {{bool}} NOT NULL,
	PRIMARY KEY (feed, patchset)
);
CREATE INDEX feed_patchsets_patchset ON feed_patchsets (patchset);

CREATE TABLE keys (
	key TEXT PRIMARY KEY,
	note TEXT NOT NULL,
	server_limit INTEGER NOT NULL,
	feed TEXT NOT NULL REFERENCES feeds (name),
	sticky TEXT NOT NULL,
	ip_ranges TEXT NOT NULL,
	created {{time}} NOT NULL
);
CREATE INDEX keys_feed ON keys (feed);

CREATE TABLE ip_licenses (
	cidr TEXT PRIMARY KEY,
	feed TEXT NOT NULL REFERENCES feeds (name),
	note TEXT NOT NULL,
	created {{time}} NOT NULL
);

CREATE TABLE servers (
	id TEXT PRIMARY KEY,
	secret_hash {{bytes}},
	key TEXT REFERENCES keys (key) ON DELETE CASCADE,
	ip_feed TEXT,
	hostname TEXT NOT NULL,
	ip TEXT NOT NULL,
	kernel_release TEXT NOT NULL,
	build_id TEXT NOT NULL,
	kernel_id TEXT NOT NULL,
	level INTEGER NOT NULL,
	effective_release TEXT NOT NULL,
	last_result TEXT NOT NULL,
	agent_version TEXT NOT NULL,
	tags TEXT NOT NULL,
	registered {{time}} NOT NULL,
	last_checkin {{time}}
);
CREATE INDEX servers_key ON servers (key, registered, id);
CREATE INDEX servers_ip ON servers (ip);
CREATE INDEX servers_ip_feed ON servers (ip_feed) WHERE ip_feed IS NOT NULL;
CREATE INDEX servers_hostname ON servers (hostname);
CREATE INDEX servers_last_checkin ON servers (last_checkin);
CREATE INDEX servers_registered ON servers (registered, id);

CREATE TABLE users (
	name TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,
	role TEXT NOT NULL,
	created {{time}} NOT NULL
);

CREATE TABLE tokens (
	id {{id}},
	hash {{bytes}} NOT NULL UNIQUE,
	user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
	note TEXT NOT NULL,
	created {{time}} NOT NULL
);
CREATE INDEX tokens_user_name ON tokens (user_name);

CREATE TABLE audit (
	id {{id}},
	at {{time}} NOT NULL,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	object TEXT NOT NULL,
	detail TEXT NOT NULL
);
`},
	// 2: the web UI's sessions, the check-in history, audit details, and
	// indexes for sorting the servers page by keyset.
	{sql: `
CREATE TABLE sessions (
	id_hash {{bytes}} PRIMARY KEY,
	user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
	created {{time}} NOT NULL,
	last_seen {{time}} NOT NULL,
	csrf TEXT NOT NULL,
	ip TEXT NOT NULL
);
CREATE INDEX sessions_user_name ON sessions (user_name);

CREATE TABLE checkins (
	id {{id}},
	server_id TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
	at {{time}} NOT NULL,
	level INTEGER NOT NULL,
	effective_release TEXT NOT NULL,
	result TEXT NOT NULL
);
CREATE INDEX checkins_server_id ON checkins (server_id, id);
CREATE INDEX checkins_at ON checkins (at);

ALTER TABLE audit ADD COLUMN ip TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN before_json TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN after_json TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, id);

CREATE INDEX servers_hostname_id ON servers (hostname, id);
CREATE INDEX servers_ip_id ON servers (ip, id);
CREATE INDEX servers_build_id ON servers (build_id);
`},
	// 3: resellers, whose IP ranges the Nagios reseller API reports on.
	{sql: `
CREATE TABLE resellers (
	login TEXT PRIMARY KEY,
	token_hash {{bytes}},
	created {{time}} NOT NULL
);
CREATE TABLE reseller_cidrs (
	login TEXT NOT NULL REFERENCES resellers (login) ON DELETE CASCADE,
	cidr TEXT NOT NULL,
	PRIMARY KEY (login, cidr)
);
`},
	// 4: each key's sticky date as the instant it ends, so that the
	// servers' state filters in SQL apply it as the resolver does.
	{sql: `ALTER TABLE keys ADD COLUMN sticky_until {{time}};`, fill: fillStickyUntil},
	// 5: the publisher keys a bundle must be signed by, in the database
	// so that every replica of a portal trusts the same ones.
	{sql: `
CREATE TABLE publisher_keys (
	fingerprint TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	armored TEXT NOT NULL,
	added {{time}} NOT NULL
);
`},
	// 6: when each server last changed its level (ePortal's "updated"
	// and updated_age); NULL until it reports a level.
	{sql: `ALTER TABLE servers ADD COLUMN updated {{time}};`},
	// 7: each key's server count, kept by triggers, so that the keys
	// pages and a registration under a server limit read it rather than
	// count a million servers; on SQLite, a trigram index of the
	// servers' hostnames, addresses and tags for substring search
	// (PostgreSQL gets pg_trgm's, made at open when the extension is
	// there: ensureSearchIndex). A server's key never changes, so no
	// trigger watches an update of it.
	{sqlite: `
ALTER TABLE keys ADD COLUMN server_count INTEGER NOT NULL DEFAULT 0;
UPDATE keys SET server_count = (SELECT COUNT(*) FROM servers s WHERE s.key = keys.key);
` + sqliteCountTriggers + `
CREATE VIRTUAL TABLE servers_search USING fts5(hostname, ip, tags, content='servers', content_rowid='rowid', tokenize='trigram');
INSERT INTO servers_search (servers_search) VALUES ('rebuild');
` + sqliteSearchTriggers, postgres: `
ALTER TABLE keys ADD COLUMN server_count BIGINT NOT NULL DEFAULT 0;
UPDATE keys k SET server_count = (SELECT COUNT(*) FROM servers s WHERE s.key = k.key);
CREATE FUNCTION kcare_count_servers() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		UPDATE keys k SET server_count = k.server_count - d.n
		FROM (SELECT key, COUNT(*) AS n FROM old_rows WHERE key IS NOT NULL GROUP BY key) d WHERE k.key = d.key;
	ELSE
		UPDATE keys k SET server_count = k.server_count + d.n
		FROM (SELECT key, COUNT(*) AS n FROM new_rows WHERE key IS NOT NULL GROUP BY key) d WHERE k.key = d.key;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER servers_count_insert AFTER INSERT ON servers REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION kcare_count_servers();
CREATE TRIGGER servers_count_delete AFTER DELETE ON servers REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION kcare_count_servers();
`},
	// 8: what replicas of a portal on one database share beside it: the
	// bundles, in chunks (the data directory is each replica's cache of
	// them); the secrets they must agree on (the index signing key, the
	// metrics salt); the web UI's failed sign-ins, counted together.
	{sql: `
CREATE TABLE blobs (
	digest TEXT PRIMARY KEY,
	size BIGINT NOT NULL,
	added {{time}} NOT NULL
);
CREATE TABLE blob_chunks (
	digest TEXT NOT NULL REFERENCES blobs (digest) ON DELETE CASCADE,
	n INTEGER NOT NULL,
	data {{bytes}} NOT NULL,
	PRIMARY KEY (digest, n)
);
CREATE TABLE portal_secrets (
	name TEXT PRIMARY KEY,
	value {{bytes}} NOT NULL,
	created {{time}} NOT NULL
);
CREATE TABLE signin_failures (
	key {{bytes}} PRIMARY KEY,
	n INTEGER NOT NULL,
	until_at {{time}},
	last_at {{time}} NOT NULL
);
CREATE INDEX signin_failures_last_at ON signin_failures (last_at);
`},
	// 9: safe rollout. The kernel health each server reports; each
	// feed's rollout policy (its waves, soak time, health thresholds,
	// maintenance window); the keys' own maintenance windows; urgent
	// patchsets; the rollouts with their samples over time; the fleet's
	// patch coverage by day.
	{sql: `
CREATE TABLE server_health (
	server_id TEXT PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
	boot_id TEXT NOT NULL,
	booted {{time}} NOT NULL,
	taint BIGINT NOT NULL,
	warn_count BIGINT NOT NULL,
	oops_count BIGINT NOT NULL,
	counts_from TEXT NOT NULL,
	level INTEGER NOT NULL,
	apply_level INTEGER NOT NULL,
	apply_ok {{bool}} NOT NULL,
	apply_at {{time}},
	apply_boot_id TEXT NOT NULL,
	apply_taint BIGINT NOT NULL,
	apply_warn_count BIGINT NOT NULL,
	apply_oops_count BIGINT NOT NULL,
	rebooted {{time}},
	rebooted_level INTEGER NOT NULL,
	updated {{time}} NOT NULL
);

CREATE TABLE feed_rollout (
	feed TEXT PRIMARY KEY REFERENCES feeds (name) ON DELETE CASCADE,
	waves TEXT NOT NULL,
	policy TEXT NOT NULL
);

CREATE TABLE key_windows (
	key TEXT PRIMARY KEY REFERENCES keys (key) ON DELETE CASCADE,
	spec TEXT NOT NULL
);

ALTER TABLE patchsets ADD COLUMN urgent {{bool}} NOT NULL DEFAULT FALSE;

CREATE TABLE rollouts (
	id {{id}},
	feed TEXT NOT NULL REFERENCES feeds (name) ON DELETE CASCADE,
	patchset TEXT NOT NULL REFERENCES patchsets (name) ON DELETE CASCADE,
	waves TEXT NOT NULL,
	wave INTEGER NOT NULL,
	state TEXT NOT NULL,
	reason TEXT NOT NULL,
	started {{time}},
	wave_started {{time}},
	updated {{time}},
	UNIQUE (feed, patchset)
);

CREATE TABLE rollout_samples (
	rollout_id BIGINT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
	at {{time}} NOT NULL,
	sample TEXT NOT NULL
);
CREATE INDEX rollout_samples_rollout ON rollout_samples (rollout_id, at);

CREATE TABLE coverage_days (
	day TEXT PRIMARY KEY,
	total INTEGER NOT NULL,
	uptodate INTEGER NOT NULL,
	outofdate INTEGER NOT NULL,
	unsupported INTEGER NOT NULL,
	inactive INTEGER NOT NULL
);
`},
}

// sqliteCountTriggers keep keys.server_count on SQLite, row by row.
const sqliteCountTriggers = `
CREATE TRIGGER servers_count_insert AFTER INSERT ON servers WHEN new.key IS NOT NULL BEGIN
	UPDATE keys SET server_count = server_count + 1 WHERE key = new.key;
END;
CREATE TRIGGER servers_count_delete AFTER DELETE ON servers WHEN old.key IS NOT NULL BEGIN
	UPDATE keys SET server_count = server_count - 1 WHERE key = old.key;
END;
`

// sqliteSearchTriggers keep the trigram index servers_search on SQLite:
// a check-in that reports the hostname, address and tags already held
// sets none of them, and so leaves the index alone.
const sqliteSearchTriggers = `
CREATE TRIGGER servers_search_insert AFTER INSERT ON servers BEGIN
	INSERT INTO servers_search (rowid, hostname, ip, tags) VALUES (new.rowid, new.hostname, new.ip, new.tags);
END;
CREATE TRIGGER servers_search_delete AFTER DELETE ON servers BEGIN
	INSERT INTO servers_search (servers_search, rowid, hostname, ip, tags) VALUES ('delete', old.rowid, old.hostname, old.ip, old.tags);
END;
CREATE TRIGGER servers_search_update AFTER UPDATE OF hostname, ip, tags ON servers BEGIN
	INSERT INTO servers_search (servers_search, rowid, hostname, ip, tags) VALUES ('delete', old.rowid, old.hostname, old.ip, old.tags);
	INSERT INTO servers_search (rowid, hostname, ip, tags) VALUES (new.rowid, new.hostname, new.ip, new.tags);
END;
`

// fillStickyUntil sets sticky_until of the keys with a sticky date.
func fillStickyUntil(ctx context.Context, tx *sql.Tx, d dialect) error {
	rows, err := tx.QueryContext(ctx, `SELECT key, sticky FROM keys WHERE sticky <> ''`)
	if err != nil {
		return err
	}
	ends := map[string]time.Time{}
	for rows.Next() {
		var key, sticky string
		if err := rows.Scan(&key, &sticky); err != nil {
			rows.Close()
			return err
		}
		if end, err := config.StickyEnd(sticky); err == nil {
			ends[key] = end
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for key, end := range ends {
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET sticky_until = $2 WHERE key = $1`, key, d.t(end)); err != nil {
			return err
		}
	}
	return nil
}

// migrate brings the schema to the newest version, one migration per
// transaction. Two processes opening the same database at once take
// turns: SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock (one per
// schema) held to the end of each transaction.
func migrate(ctx context.Context, db *sql.DB, d dialect) error {
	for {
		done, err := migrateOne(ctx, db, d)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next pending migration and reports whether
// there was none.
func migrateOne(ctx context.Context, db *sql.DB, d dialect) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if d.name == "postgres" {
		_, err := tx.ExecContext(ctx,
			`SELECT pg_advisory_xact_lock(hashtext('kcare.schema_migrations.' || current_schema()))`)
		if err != nil {
			return false, fmt.Errorf("migrate: lock: %w", err)
		}
	}
	_, err = tx.ExecContext(ctx, d.expand(`CREATE TABLE IF NOT EXISTS schema_migrations (
	version INTEGER PRIMARY KEY,
	applied {{time}} NOT NULL
)`))
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return false, fmt.Errorf("migrate: read version: %w", err)
	}
	if v > len(migrations) {
		return false, fmt.Errorf("migrate: database schema version %d is newer than this program's %d", v, len(migrations))
	}
	if v == len(migrations) {
		return true, tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, migrations[v].text(d)); err != nil {
		return false, fmt.Errorf("migrate: to version %d: %w", v+1, err)
	}
	if fill := migrations[v].fill; fill != nil {
		if err := fill(ctx, tx, d); err != nil {
			return false, fmt.Errorf("migrate: to version %d: %w", v+1, err)
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)`, v+1, d.t(now()))
	if err != nil {
		return false, fmt.Errorf("migrate: to version %d: %w", v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate: to version %d: %w", v+1, err)
	}
	return false, nil
}
