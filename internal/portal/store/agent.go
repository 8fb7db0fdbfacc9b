package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// agentServerQuery reads, by a server's id, everything authenticating an
// agent's request needs: the server, its key's settings (NULL when it
// has none or the key is gone) and the store's version.
const agentServerQuery = `SELECT ` + serverCols + `, k.key, k.note, k.server_limit, k.feed, k.sticky, k.ip_ranges, k.created,
	(SELECT n FROM store_version WHERE id = 1)
FROM servers s LEFT JOIN keys k ON k.key = s.key WHERE s.id = $1`

func (s *sqlStore) AgentServer(ctx context.Context, id string) (*Server, *Key, int64, error) {
	var (
		v                 Server
		k                 Key
		keyName, ranges   sql.NullString
		limit             sql.NullInt64
		version           int64
		noteS, feedS, stS string
	)
	note, feed, stick := nullString{&noteS}, nullString{&feedS}, nullString{&stS}
	err := s.hotRow(ctx, s.r, agentServerQuery, id).Scan(&v.ID, &v.SecretHash, nullString{&v.Key}, nullString{&v.LicenseFeed},
		&v.Hostname, &v.IP, &v.Release, &v.BuildID, &v.KernelID, &v.Level, &v.EffectiveRelease, &v.LastResult,
		&v.AgentVersion, &v.Tags, timeCol{&v.Registered}, timeCol{&v.LastCheckin}, timeCol{&v.Updated},
		&keyName, note, &limit, feed, stick, &ranges, timeCol{&k.Created}, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, 0, fmt.Errorf("server %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("server %s: %w", id, err)
	}
	if !keyName.Valid {
		return &v, nil, version, nil
	}
	k.Key, k.Limit = keyName.String, int(limit.Int64)
	k.Note, k.Feed, k.Sticky = noteS, feedS, stS
	if err := json.Unmarshal([]byte(ranges.String), &k.IPRanges); err != nil {
		return nil, nil, 0, fmt.Errorf("key %s: ip ranges: %w", MaskKey(k.Key), err)
	}
	if len(k.IPRanges) == 0 {
		k.IPRanges = nil
	}
	return &v, &k, version, nil
}
