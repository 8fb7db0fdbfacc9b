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
)

// Servers.

const serverCols = `s.id, s.secret_hash, s.key, s.ip_feed, s.hostname, s.ip, s.kernel_release, s.build_id,
	s.kernel_id, s.level, s.effective_release, s.last_result, s.agent_version, s.tags,
	s.registered, s.last_checkin`

func scanServer(r scanner) (Server, error) {
	var v Server
	err := r.Scan(&v.ID, &v.SecretHash, nullString{&v.Key}, nullString{&v.LicenseFeed}, &v.Hostname, &v.IP, &v.Release, &v.BuildID,
		&v.KernelID, &v.Level, &v.EffectiveRelease, &v.LastResult, &v.AgentVersion, &v.Tags,
		timeCol{&v.Registered}, timeCol{&v.LastCheckin})
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
		var limit int
		var rangesJSON string
		err := tx.QueryRowContext(ctx, `SELECT server_limit, ip_ranges FROM keys WHERE key = $1`+s.d.forUpdate,
			key).Scan(&limit, &rangesJSON)
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
		if limit > 0 {
			var n int
			err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM servers WHERE key = $1`, key).Scan(&n)
			if err != nil {
				return err
			}
			if n >= limit {
				return fmt.Errorf("%d of %d: %w", n, limit, ErrLimitReached)
			}
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
	agent_version = excluded.agent_version, tags = excluded.tags, last_checkin = excluded.last_checkin
WHERE servers.key IS NULL`, s.serverArgs(v, feed)...)
	if err == nil && n == 0 {
		err = fmt.Errorf("registered under a key: %w", ErrExists)
	}
	if err != nil {
		return fmt.Errorf("record IP-licensed server %s: %w", v.ID, err)
	}
	return nil
}

func (s *sqlStore) Server(ctx context.Context, id string) (*Server, error) {
	return queryOne(ctx, s.r, "server "+id, scanServer, `SELECT `+serverCols+` FROM servers s WHERE s.id = $1`, id)
}

// serverFeed is the feed a server's updates come from: its key's, or
// its IP license's.
const serverFeed = `COALESCE(k.feed, s.ip_feed, 'main')`

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
	if (f.CheckinAge > 0 || f.ActiveWithin > 0 || f.IsUpdated != nil) && f.Now.IsZero() {
		return nil, fmt.Errorf("servers: %w: a check-in age or update state needs the caller's Now", ErrInvalidInput)
	}
	q, args := s.serversQuery(f, f.Now)
	out, err := queryAll(ctx, s.r, "servers", scanServer, q, args...)
	if f.Before != nil && f.After == nil {
		slices.Reverse(out)
	}
	return out, err
}

// serversQuery is the SELECT for Servers(f) at time now.
func (s *sqlStore) serversQuery(f ServerFilter, now time.Time) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	join := false
	if f.Hostname != "" {
		where = append(where, `s.hostname `+s.d.like+` `+arg(likeEscape(f.Hostname))+` ESCAPE '\'`)
	}
	if f.IP != "" {
		where = append(where, `s.ip = `+arg(f.IP))
	}
	if f.Key != "" {
		where = append(where, `s.key = `+arg(f.Key))
	}
	if f.Feed != "" {
		join = true
		where = append(where, serverFeed+` = `+arg(f.Feed))
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
	}
	if f.Search != "" {
		p := arg(likeEscape(f.Search))
		where = append(where, `(s.hostname `+s.d.like+` `+p+` ESCAPE '\' OR s.ip `+s.d.like+` `+p+` ESCAPE '\')`)
	}
	if f.ActiveWithin > 0 {
		where = append(where, `s.last_checkin >= `+arg(s.d.t(now.Add(-f.ActiveWithin))))
	}
	if f.Unsupported != nil {
		not := ""
		if !*f.Unsupported {
			not = "NOT "
		}
		where = append(where, not+`NOT EXISTS (SELECT 1 FROM levels l WHERE l.build_id = s.build_id)`)
	}
	col, cmp, dir := `s.registered`, ` > `, ``
	switch f.Sort {
	case "hostname":
		col = `s.hostname`
	case "ip":
		col = `s.ip`
	}
	// Backward (Before) reads the other way from the cursor, nearest
	// first; Servers turns the rows back.
	cursor := f.After
	if f.Before != nil && f.After == nil {
		cursor = f.Before
	}
	if f.Desc != (cursor != nil && cursor == f.Before) {
		cmp, dir = ` < `, ` DESC`
	}
	if cursor != nil {
		var v any = cursor.Value
		if col == `s.registered` {
			t, err := time.Parse(time.RFC3339Nano, cursor.Value)
			if err != nil {
				t = time.Time{}
			}
			v = s.d.t(t)
		}
		pv, pid := arg(v), arg(cursor.ID)
		// A row-value comparison: both backends walk the (col, id) index.
		where = append(where, `(`+col+`, s.id)`+cmp+`(`+pv+`, `+pid+`)`)
	}
	var q strings.Builder
	if f.IsUpdated != nil {
		q.WriteString(`WITH ` + s.allowedLevels(nowArg) + ` `)
	}
	q.WriteString(`SELECT ` + serverCols + ` FROM servers s`)
	if join {
		q.WriteString(` LEFT JOIN keys k ON k.key = s.key`)
	}
	if f.IsUpdated != nil {
		q.WriteString(allowedJoin)
	}
	if len(where) > 0 {
		q.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	q.WriteString(` ORDER BY ` + col + dir + `, s.id` + dir)
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
