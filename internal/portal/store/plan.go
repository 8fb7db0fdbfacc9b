package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A page of servers is read in the page's order (registration time,
// hostname or address, each with an index), stopping once it has its
// rows: quick while the filters let through many of the servers read, and
// a scan of every server when they let through few or none. So for each
// filter that can name its servers from an index of its own (a substring
// of the hostname, address or tags through the trigram index; a feed
// through its keys' server counts; an unsupported kernel through the
// build-ids the servers run), the store first asks that index how many
// servers the filter lets through, up to fewServers: if no more, the
// query reads just those servers and sorts them. PostgreSQL's planner
// weighs the same choice from its statistics; SQLite's has none to weigh
// it with, so the store makes it there.
var fewServers = 5000

// A substring of the hostname, address or tags that many servers hold
// may still be held only by servers far down the page's order. So when
// the trigram index names more than fewServers, Servers first reads the
// first windowRows servers in the page's order (an index range); only if
// they hold less than a page does it read every server the index names
// and sort them.
var windowRows = 20_000

// plan is what Servers found out before it builds its query.
type plan struct {
	searchFTS, tagFTS bool     // read the servers the trigram index names (SQLite)
	ftsMany           bool     // the trigram index names many servers for each of the filters it serves
	filterFirst       bool     // read the servers the filters name, then sort them (PostgreSQL)
	window            *Cursor  // read no further than this row in the page's order
	feedFew           bool     // the feed's keys and IP licenses hold few servers
	feedKeys          []string // the feed's keys
	unsupported       []string // the build-ids servers run that no level is for (with f.Unsupported true)
	unsupportedFew    bool     // and few servers run them (SQLite)
}

// maxUnsupported bounds the build-ids an unsupported filter lists; with
// more, it asks the levels table of each server read.
const maxUnsupported = 500

// planFor finds out what the query for f needs to know first.
func (s *sqlStore) planFor(ctx context.Context, f ServerFilter) (plan, error) {
	var p plan
	var err error
	var many []bool
	for _, q := range []struct {
		term, cols string
		use        *bool
	}{{f.Search, "hostname ip", &p.searchFTS}, {f.Tag, "tags", &p.tagFTS}} {
		if s.d.name != "sqlite" || !usesTrigrams(q.term) {
			continue // no trigram to look up
		}
		var few bool
		if few, err = s.fewMatches(ctx, q.cols, q.term); err != nil {
			return p, err
		}
		*q.use = few
		many = append(many, !few)
	}
	p.ftsMany = len(many) > 0 && !slices.Contains(many, false)
	if s.d.name == "postgres" && (f.Search != "" || f.Tag != "") {
		// PostgreSQL's planner knows how many servers pg_trgm names,
		// but not where they are in the page's order: read the window
		// first all the same.
		p.ftsMany = true
	}
	if f.Feed != "" {
		type keyCount struct {
			key string
			n   int
		}
		keys, err := queryAll(ctx, s.r, "keys of feed "+f.Feed, func(r scanner) (k keyCount, err error) {
			return k, r.Scan(&k.key, &k.n)
		}, `SELECT key, server_count FROM keys WHERE feed = $1`, f.Feed)
		if err != nil {
			return p, err
		}
		var n int
		err = s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM servers WHERE key IS NULL AND COALESCE(ip_feed, 'main') = $1 LIMIT `+
			strconv.Itoa(fewServers+1)+`) x`, f.Feed).Scan(&n)
		if err != nil {
			return p, fmt.Errorf("servers of feed %s: %w", f.Feed, err)
		}
		for _, k := range keys {
			n += k.n
			p.feedKeys = append(p.feedKeys, k.key)
		}
		p.feedFew = n <= fewServers && len(keys) <= maxUnsupported
	}
	if f.Unsupported != nil && *f.Unsupported {
		if p.unsupported, err = s.unsupportedBuilds(ctx); err != nil {
			return p, err
		}
		if len(p.unsupported) > 0 && len(p.unsupported) <= maxUnsupported && s.d.name == "sqlite" {
			args := make([]any, len(p.unsupported))
			for i, b := range p.unsupported {
				args[i] = b
			}
			var n int
			err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM servers WHERE build_id IN (`+
				placeholders(1, len(args))+`) LIMIT `+strconv.Itoa(fewServers+1)+`)`, args...).Scan(&n)
			if err != nil {
				return p, fmt.Errorf("servers of unsupported kernels: %w", err)
			}
			p.unsupportedFew = n <= fewServers
		}
	}
	return p, nil
}

// fewMatches reports whether the trigram index (SQLite) names at most
// fewServers servers with term, of three characters or more, in one of
// cols.
func (s *sqlStore) fewMatches(ctx context.Context, cols, term string) (bool, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT rowid FROM servers_search WHERE servers_search MATCH $1 LIMIT `+
		strconv.Itoa(fewServers+1)+`)`, ftsQuery(cols, term)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("search servers: %w", err)
	}
	return n <= fewServers, nil
}

// ftsQuery is an FTS5 query for servers with term, as a substring, in
// one of the columns cols names: the term as one phrase, which the
// trigram tokenizer matches wherever it occurs, in any case.
func ftsQuery(cols, term string) string {
	return "{" + cols + "} : \"" + strings.ReplaceAll(term, `"`, `""`) + `"`
}

// unsupportedBuilds lists the build-ids the servers run that no level is
// for, read through the servers' build-id index a value at a time (a
// loose index scan: a step per distinct build-id, not per server).
func (s *sqlStore) unsupportedBuilds(ctx context.Context) ([]string, error) {
	return queryAll(ctx, s.r, "unsupported kernels", func(r scanner) (b string, err error) { return b, r.Scan(&b) },
		`WITH RECURSIVE b(id) AS (
	SELECT MIN(build_id) FROM servers
	UNION ALL
	SELECT (SELECT MIN(build_id) FROM servers WHERE build_id > b.id) FROM b WHERE b.id IS NOT NULL)
SELECT id FROM b WHERE id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM levels l WHERE l.build_id = b.id)`)
}

// placeholders is "$from, $from+1, ..." for n parameters.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+i))
	}
	return b.String()
}
