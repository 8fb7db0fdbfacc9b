package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Servers.

const serverCols = `s.id, s.secret_hash, s.key, s.ip_feed, s.hostname, s.ip, s.kernel_release, s.build_id,
	s.kernel_id, s.level, s.effective_release, s.last_result, s.agent_version, s.tags,
	s.registered, s.last_checkin, s.updated`

func scanServer(r scanner) (Server, error) {
	var v Server
	err := r.Scan(&v.ID, &v.SecretHash, nullString{&v.Key}, nullString{&v.LicenseFeed}, &v.Hostname, &v.IP, &v.Release, &v.BuildID,
		&v.KernelID, &v.Level, &v.EffectiveRelease, &v.LastResult, &v.AgentVersion, &v.Tags,
		timeCol{&v.Registered}, timeCol{&v.LastCheckin}, timeCol{&v.Updated})
	return v, err
}

// insertServer is the INSERT of one server; its arguments are serverArgs.
const insertServer = `INSERT INTO servers (id, secret_hash, key, ip_feed, hostname, ip, kernel_release,
	build_id, kernel_id, level, effective_release, last_result, agent_version, tags, registered, last_checkin)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`

func (s *sqlStore) serverArgs(v *Server, ipFeed string) []any {
	return []any{v.ID, v.SecretHash, nullable(v.Key), nullable(ipFeed), v.Hostname, v.IP, v.Release,
		v.BuildID, v.KernelID, v.Level, v.EffectiveRelease, v.LastResult, v.AgentVersion, v.Tags,
		s.d.t(v.Registered), s.d.t(v.LastCheckin)}
}

// ipAllowed reports whether ip is inside one of ranges; any ip is
// allowed when there are none.
func ipAllowed(ip string, ranges []string) bool {
	if len(ranges) == 0 {
		return true
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, r := range ranges {
		if p, err := netip.ParsePrefix(r); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *sqlStore) Register(ctx context.Context, key string, v *Server) error {
	if v.ID == "" {
		return fmt.Errorf("register server under key %s: no server id: %w", MaskKey(key), ErrInvalidInput)
	}
	if v.Registered.IsZero() {
		v.Registered = now()
	}
	v.Registered, v.LastCheckin = norm(v.Registered), norm(v.LastCheckin)
	v.Key = key
	err := s.write(ctx, func(tx *sql.Tx) error {
		var limit, n int
		var rangesJSON string
		err := tx.QueryRowContext(ctx, `SELECT server_limit, ip_ranges, server_count FROM keys WHERE key = $1`+s.d.forUpdate,
			key).Scan(&limit, &rangesJSON, &n)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrInvalidKey
		}
		if err != nil {
			return err
		}
		var ranges []string
		if err := json.Unmarshal([]byte(rangesJSON), &ranges); err != nil {
			return fmt.Errorf("ip ranges: %w", err)
		}
		if !ipAllowed(v.IP, ranges) {
			return fmt.Errorf("%s: %w", v.IP, ErrIPNotAllowed)
		}
		// n is kept by a trigger, under the key row's lock (on SQLite,
		// the one writer's).
		if limit > 0 && n >= limit {
			return fmt.Errorf("%d of %d: %w", n, limit, ErrLimitReached)
		}
		_, err = tx.ExecContext(ctx, insertServer, s.serverArgs(v, "")...)
		if isUnique(err) {
			return fmt.Errorf("server %s: %w", v.ID, ErrExists)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("register server %s under key %s: %w", v.ID, MaskKey(key), err)
	}
	return nil
}

func (s *sqlStore) UpsertIPServer(ctx context.Context, v *Server, feed string) error {
	switch {
	case v.ID == "":
		return fmt.Errorf("record IP-licensed server: no server id: %w", ErrInvalidInput)
	case feed == "":
		return fmt.Errorf("record IP-licensed server %s: no feed: %w", v.ID, ErrInvalidInput)
	}
	t := now()
	if v.Registered.IsZero() {
		v.Registered = t
	}
	if v.LastCheckin.IsZero() {
		v.LastCheckin = t
	}
	v.Registered, v.LastCheckin = norm(v.Registered), norm(v.LastCheckin)
	v.Key, v.LicenseFeed = "", feed
	n, err := s.exec(ctx, insertServer+`
ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, ip_feed = excluded.ip_feed,
	hostname = excluded.hostname, ip = excluded.ip, kernel_release = excluded.kernel_release,
	build_id = excluded.build_id, kernel_id = excluded.kernel_id, level = excluded.level,
	effective_release = excluded.effective_release, last_result = excluded.last_result,
	agent_version = excluded.agent_version, tags = excluded.tags, last_checkin = excluded.last_checkin,
	updated = CASE WHEN excluded.level > 0 AND (servers.level <> excluded.level OR servers.build_id <> excluded.build_id)
		THEN excluded.last_checkin ELSE servers.updated END
WHERE servers.key IS NULL`, s.serverArgs(v, feed)...)
	if err == nil && n == 0 {
		err = fmt.Errorf("registered under a key: %w", ErrExists)
	}
	if err == nil && v.Level > 0 {
		// A server recorded at once with a level changed to it then.
		_, err = s.exec(ctx, `UPDATE servers SET updated = $2 WHERE id = $1 AND updated IS NULL`, v.ID, s.d.t(v.LastCheckin))
	}
	if err != nil {
		return fmt.Errorf("record IP-licensed server %s: %w", v.ID, err)
	}
	return nil
}

func (s *sqlStore) Server(ctx context.Context, id string) (*Server, error) {
	return queryOne(ctx, s.r, "server "+id, scanServer, `SELECT `+serverCols+` FROM servers s WHERE s.id = $1`, id)
}

// allowedLevels are two small tables a servers query joins to every
// server it reads (whatever the planner thinks of the tables' sizes): the
// newest level each key's servers are allowed, per kernel build (avk), and
// the same for the servers without a key, per feed (avf). Allowed is as
// resolve.Pick allows a server asking with no PREFIX: visible in the feed,
// released at or before now less the feed's delay, and for a key with a
// sticky date, at or before the end of that day (keys.sticky_until, from
// config.StickyEnd). now is the query's argument now; its servers join
// with allowedJoin, and their allowed level is allowedLevel (-1: none, so
// such a server counts as up to date).
func (s *sqlStore) allowedLevels(now string) string {
	cut := s.d.minusNanos(now, `f.deploy_after`)
	visible := `JOIN feed_patchsets fp ON fp.feed = f.name AND fp.enabled
	JOIN levels l ON l.patchset = fp.patchset
	WHERE (l.channel = 'stable' OR f.channel = 'test') AND l.released <= ` + cut
	return `avk AS (SELECT k.key AS key, l.build_id AS build_id, MAX(l.level) AS level
	FROM keys k JOIN feeds f ON f.name = k.feed ` + visible + `
	AND (k.sticky_until IS NULL OR l.released <= k.sticky_until)
	GROUP BY k.key, l.build_id),
avf AS (SELECT f.name AS feed, l.build_id AS build_id, MAX(l.level) AS level
	FROM feeds f ` + visible + `
	GROUP BY f.name, l.build_id)`
}

// allowedJoin joins allowedLevels' tables to the servers s.
const allowedJoin = ` LEFT JOIN avk ON avk.key = s.key AND avk.build_id = s.build_id` +
	` LEFT JOIN avf ON s.key IS NULL AND avf.feed = COALESCE(s.ip_feed, 'main') AND avf.build_id = s.build_id`

// allowedLevel is a server's allowed level, given allowedJoin.
const allowedLevel = `COALESCE(avk.level, avf.level, -1)`

func (s *sqlStore) Servers(ctx context.Context, f ServerFilter) ([]Server, error) {
	if f.needsNow() && f.Now.IsZero() {
		return nil, fmt.Errorf("servers: %w: a check-in age or update state needs the caller's Now", ErrInvalidInput)
	}
	p, err := s.planFor(ctx, f)
	if err != nil {
		return nil, err
	}
	if p.ftsMany && f.Limit > 0 && f.Offset == 0 {
		// See windowRows: the first rows in the page's order first.
		w, err := s.windowEnd(ctx, f)
		if err != nil {
			return nil, err
		}
		if w != nil {
			wp := p
			wp.window = w
			out, err := s.servers(ctx, f, wp)
			if err != nil || len(out) >= f.Limit {
				return out, err
			}
			if s.d.name == "postgres" {
				p.filterFirst = true
			} else {
				p.searchFTS, p.tagFTS = usesTrigrams(f.Search), usesTrigrams(f.Tag)
			}
		}
	}
	return s.servers(ctx, f, p)
}

// servers runs the query for f as p plans it.
func (s *sqlStore) servers(ctx context.Context, f ServerFilter, p plan) ([]Server, error) {
	q, args := s.serversQuery(f, f.Now, p)
	out, err := queryAll(ctx, s.r, "servers", scanServer, q, args...)
	if f.Before != nil && f.After == nil {
		slices.Reverse(out)
	}
	return out, err
}

// usesTrigrams reports whether a trigram index can look term up: three
// characters or more.
func usesTrigrams(term string) bool { return utf8.RuneCountInString(term) >= 3 }

// noIndex is the sort column col as an expression no index serves, which
// orders the same.
func noIndex(col string) string {
	if col == `s.registered` {
		return `(s.registered + interval '0 s')`
	}
	return `(` + col + ` || '')`
}

// sortCol is the column f.Sort orders by.
func sortCol(sort string) string {
	switch sort {
	case "hostname":
		return `s.hostname`
	case "ip":
		return `s.ip`
	}
	return `s.registered`
}

// cursorValue is c's value as a query argument of the column sort orders
// by.
func (s *sqlStore) cursorValue(sort string, c *Cursor) any {
	if sortCol(sort) != `s.registered` {
		return c.Value
	}
	t, err := time.Parse(time.RFC3339Nano, c.Value)
	if err != nil {
		t = time.Time{}
	}
	return s.d.t(t)
}

// order returns the conditions that start f's rows at its cursor, and its
// ORDER BY. Backward (Before) reads the other way from the cursor,
// nearest first; Servers turns the rows back.
func (s *sqlStore) order(f ServerFilter, arg func(any) string) (where []string, orderBy string) {
	col, cmp, dir := sortCol(f.Sort), ` > `, ``
	cursor := f.After
	if f.Before != nil && f.After == nil {
		cursor = f.Before
	}
	if f.Desc != (cursor != nil && cursor == f.Before) {
		cmp, dir = ` < `, ` DESC`
	}
	if cursor != nil {
		pv, pid := arg(s.cursorValue(f.Sort, cursor)), arg(cursor.ID)
		// A row-value comparison: both backends walk the (col, id) index.
		where = append(where, `(`+col+`, s.id)`+cmp+`(`+pv+`, `+pid+`)`)
	}
	return where, ` ORDER BY ` + col + dir + `, s.id` + dir
}

// orderQuery is head (a SELECT from servers s) with f's cursor and order.
func (s *sqlStore) orderQuery(f ServerFilter, head string) (string, []any) {
	var args []any
	where, orderBy := s.order(f, func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	})
	if len(where) > 0 {
		head += ` WHERE ` + strings.Join(where, ` AND `)
	}
	return head + orderBy, args
}

// windowEnd is the windowRows-th server in f's order from its cursor, or
// nil when there are fewer.
func (s *sqlStore) windowEnd(ctx context.Context, f ServerFilter) (*Cursor, error) {
	q, args := s.orderQuery(f, `SELECT `+sortCol(f.Sort)+`, s.id FROM servers s`)
	q += ` LIMIT 1 OFFSET ` + strconv.Itoa(windowRows-1)
	var c Cursor
	var v any
	err := s.r.QueryRowContext(ctx, q, args...).Scan(&v, &c.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	switch v := v.(type) {
	case int64: // SQLite's registration time
		c.Value = time.Unix(0, v).UTC().Format(time.RFC3339Nano)
	case time.Time:
		c.Value = v.UTC().Format(time.RFC3339Nano)
	case string:
		c.Value = v
	case []byte:
		c.Value = string(v)
	default:
		return nil, fmt.Errorf("servers: window end of type %T", v)
	}
	return &c, nil
}

// serversQuery is the SELECT for Servers(f) at time now, as p plans it.
func (s *sqlStore) serversQuery(f ServerFilter, now time.Time, p plan) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Hostname != "" {
		where = append(where, `s.hostname `+s.d.like+` `+arg(likeEscape(f.Hostname))+` ESCAPE '\'`)
	}
	if f.IP != "" {
		where = append(where, `s.ip = `+arg(f.IP))
	}
	if f.HostnameLike != "" {
		where = append(where, `LOWER(s.hostname) LIKE `+arg(likePattern(strings.ToLower(f.HostnameLike)))+` ESCAPE '\'`)
	}
	if f.IPLike != "" {
		where = append(where, `s.ip LIKE `+arg(likePattern(f.IPLike))+` ESCAPE '\'`)
	}
	if f.UpdatedAge > 0 {
		where = append(where, `s.updated < `+arg(s.d.t(now.Add(-f.UpdatedAge))))
	}
	if f.UpdatedWithin > 0 {
		where = append(where, `s.updated >= `+arg(s.d.t(now.Add(-f.UpdatedWithin))))
	}
	if f.RegisteredAge > 0 {
		where = append(where, `s.registered < `+arg(s.d.t(now.Add(-f.RegisteredAge))))
	}
	if f.RegisteredWithin > 0 {
		where = append(where, `s.registered >= `+arg(s.d.t(now.Add(-f.RegisteredWithin))))
	}
	if f.Key != "" {
		where = append(where, `s.key = `+arg(f.Key))
	}
	if f.Feed != "" {
		// The servers of the feed's keys, and those its IP licenses
		// recorded: the feed a server's updates come from, put so that
		// an index can answer it.
		fa := arg(f.Feed)
		inFeed := `COALESCE((SELECT k.feed FROM keys k WHERE k.key = s.key), s.ip_feed, 'main') = ` + fa
		if s.d.name == "postgres" {
			// PostgreSQL weighs reading the feed's keys' servers
			// (servers_key) against walking the page's order itself.
			inFeed = `(s.key IN (SELECT k.key FROM keys k WHERE k.feed = ` + fa + `) OR (s.key IS NULL AND COALESCE(s.ip_feed, 'main') = ` + fa + `))`
		}
		if p.feedFew {
			// The feed's keys' servers by their index, named one by one
			// so that each backend reads just those, then sorts them.
			keys := make([]string, len(p.feedKeys))
			for i, k := range p.feedKeys {
				keys[i] = arg(k)
			}
			byKey := func(t string) string {
				if len(keys) == 0 {
					return `1 = 0`
				}
				return t + `key IN (` + strings.Join(keys, ", ") + `)`
			}
			ips := func(t string) string { return t + `key IS NULL AND COALESCE(` + t + `ip_feed, 'main') = ` + fa }
			if s.d.name == "sqlite" {
				inFeed = `s.rowid IN (SELECT rowid FROM servers WHERE ` + byKey("") + ` UNION ALL SELECT rowid FROM servers WHERE ` + ips("") + `)`
			} else {
				inFeed = `(` + byKey("s.") + ` OR (` + ips("s.") + `))`
				p.filterFirst = true
			}
		}
		where = append(where, inFeed)
	}
	if f.CheckinAge > 0 {
		where = append(where, `(s.last_checkin IS NULL OR s.last_checkin < `+arg(s.d.t(now.Add(-f.CheckinAge)))+`)`)
	}
	nowArg := ""
	if f.IsUpdated != nil {
		nowArg = arg(s.d.t(now))
		// No allowed level counts as updated: levels are never negative.
		if *f.IsUpdated {
			where = append(where, `s.level >= `+allowedLevel)
		} else {
			where = append(where, `s.level < `+allowedLevel)
		}
	}
	if f.Tag != "" {
		where = append(where, `s.tags `+s.d.like+` `+arg(likeEscape(f.Tag))+` ESCAPE '\'`)
		if p.tagFTS {
			where = append(where, `s.rowid IN (SELECT rowid FROM servers_search WHERE servers_search MATCH `+arg(ftsQuery("tags", f.Tag))+`)`)
		}
	}
	if f.Search != "" {
		pa := arg(likeEscape(f.Search))
		where = append(where, `(s.hostname `+s.d.like+` `+pa+` ESCAPE '\' OR s.ip `+s.d.like+` `+pa+` ESCAPE '\')`)
		if p.searchFTS {
			where = append(where, `s.rowid IN (SELECT rowid FROM servers_search WHERE servers_search MATCH `+arg(ftsQuery("hostname ip", f.Search))+`)`)
		}
	}
	if f.ActiveWithin > 0 {
		where = append(where, `s.last_checkin >= `+arg(s.d.t(now.Add(-f.ActiveWithin))))
	}
	switch {
	case f.Unsupported == nil:
	case !*f.Unsupported:
		where = append(where, `EXISTS (SELECT 1 FROM levels l WHERE l.build_id = s.build_id)`)
	case len(p.unsupported) == 0:
		where = append(where, `1 = 0`) // every kernel the servers run has levels
	case len(p.unsupported) > maxUnsupported:
		where = append(where, `NOT EXISTS (SELECT 1 FROM levels l WHERE l.build_id = s.build_id)`)
	default:
		list := make([]string, len(p.unsupported))
		for i, b := range p.unsupported {
			list[i] = arg(b)
		}
		in := `s.build_id IN (` + strings.Join(list, ", ") + `)`
		if p.unsupportedFew {
			in = `s.rowid IN (SELECT rowid FROM servers WHERE build_id IN (` + strings.Join(list, ", ") + `))`
		}
		where = append(where, in)
	}
	cursor, orderBy := s.order(f, arg)
	if p.filterFirst {
		// An order by an expression of the sort column, not the
		// column: PostgreSQL cannot walk the column's index for it, so
		// it reads the servers the filters name (pg_trgm) and sorts
		// those.
		orderBy = strings.Replace(orderBy, sortCol(f.Sort), noIndex(sortCol(f.Sort)), 1)
	}
	where = append(where, cursor...)
	if w := p.window; w != nil {
		// No further than the window's end, in the page's order.
		op := ` <= `
		if strings.Contains(orderBy, `DESC`) {
			op = ` >= `
		}
		where = append(where, `(`+sortCol(f.Sort)+`, s.id)`+op+`(`+arg(s.cursorValue(f.Sort, w))+`, `+arg(w.ID)+`)`)
	}
	var q strings.Builder
	if f.IsUpdated != nil {
		q.WriteString(`WITH ` + s.allowedLevels(nowArg) + ` `)
	}
	q.WriteString(`SELECT ` + serverCols + ` FROM servers s`)
	if f.IsUpdated != nil {
		q.WriteString(allowedJoin)
	}
	if len(where) > 0 {
		q.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	q.WriteString(orderBy)
	switch {
	case f.Limit > 0:
		q.WriteString(` LIMIT ` + arg(f.Limit))
	case f.Offset > 0 && s.d.name == "sqlite":
		q.WriteString(` LIMIT -1`) // SQLite has no OFFSET without LIMIT
	}
	if f.Offset > 0 {
		q.WriteString(` OFFSET ` + arg(f.Offset))
	}
	return q.String(), args
}

// needsNow reports whether f counts back from its Now.
func (f ServerFilter) needsNow() bool {
	return f.CheckinAge > 0 || f.ActiveWithin > 0 || f.IsUpdated != nil || f.RegisteredAge > 0 || f.RegisteredWithin > 0 ||
		f.UpdatedAge > 0 || f.UpdatedWithin > 0
}

func (s *sqlStore) CountFiltered(ctx context.Context, f ServerFilter) (int, error) {
	if f.needsNow() && f.Now.IsZero() {
		return 0, fmt.Errorf("count servers: %w: a check-in age or update state needs the caller's Now", ErrInvalidInput)
	}
	f.Limit, f.Offset, f.After, f.Before = 0, 0, nil, nil
	p, err := s.planFor(ctx, f)
	if err != nil {
		return 0, err
	}
	q, args := s.serversQuery(f, f.Now, p)
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM (`+q+`) c`, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count servers: %w", err)
	}
	return n, nil
}

func (s *sqlStore) CountServers(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM servers`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count servers: %w", err)
	}
	return n, nil
}

func (s *sqlStore) SetServerTags(ctx context.Context, id, tags string) error {
	n, err := s.exec(ctx, `UPDATE servers SET tags = $2 WHERE id = $1`, id, tags)
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("set tags of server %s: %w", id, err)
	}
	return nil
}

func (s *sqlStore) DeleteServer(ctx context.Context, id string) error {
	n, err := s.exec(ctx, `DELETE FROM servers WHERE id = $1`, id)
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete server %s: %w", id, err)
	}
	return nil
}

// cleanBatch bounds how many servers one transaction of CleanServers
// deletes, and cleanPause is the pause between two: SQLite has one
// writer, and a million servers deleted in one transaction held every
// agent's check-in for as long (12 s measured, beyond the busy timeout
// for more), where batches let them in between.
const (
	cleanBatch = 2000
	cleanPause = 10 * time.Millisecond
)

func (s *sqlStore) CleanServers(ctx context.Context, before time.Time) (int, error) {
	b := s.d.t(before)
	var total int64
	// Each condition on its own, so that each batch finds its rows
	// through an index.
	for _, cond := range []string{`last_checkin < $1`, `last_checkin IS NULL AND registered < $1`} {
		for {
			n, err := s.exec(ctx, `DELETE FROM servers WHERE id IN (SELECT id FROM servers WHERE `+cond+` LIMIT `+strconv.Itoa(cleanBatch)+`)`, b)
			total += n
			if err != nil {
				return int(total), fmt.Errorf("clean servers not seen since %s: %w", before.UTC().Format(time.RFC3339), err)
			}
			if n < cleanBatch {
				break
			}
			select {
			case <-ctx.Done():
				return int(total), ctx.Err()
			case <-time.After(cleanPause):
			}
		}
	}
	if _, err := s.PruneCheckins(ctx, before); err != nil {
		return int(total), err
	}
	return int(total), nil
}

// Check-in history.

func (s *sqlStore) CheckinHistory(ctx context.Context, serverID string, limit int) ([]Checkin, error) {
	q := `SELECT server_id, at, level, effective_release, result FROM checkins WHERE server_id = $1 ORDER BY id DESC`
	args := []any{serverID}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	return queryAll(ctx, s.r, "check-in history of "+serverID, func(r scanner) (c Checkin, err error) {
		return c, r.Scan(&c.ServerID, timeCol{&c.At}, &c.Level, &c.EffectiveRelease, &c.Result)
	}, q, args...)
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
