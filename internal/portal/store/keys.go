package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/config"
)

// Keys and IP licenses.

// parseCIDR parses a CIDR, or a single address as its one-address
// prefix, and returns it in canonical form (host bits cleared).
func parseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("ip range %q: %w", s, ErrInvalidInput)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip range %q: %w", s, ErrInvalidInput)
	}
	return p.Masked(), nil
}

// validKey reports whether k can be an activation key: printable ASCII
// without spaces or slashes, as it appears in URLs and kcarectl's
// command line.
func validKey(k string) bool {
	if k == "" || len(k) > 200 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c > '~' || c == '/' {
			return false
		}
	}
	return true
}

// keyColumns are what checkKey makes of a key for its row: its IP ranges
// as JSON, and the end of its sticky day (config.StickyEnd), zero for
// none.
type keyColumns struct {
	ranges      string
	stickyUntil time.Time
}

func checkKey(k *Key) (kc keyColumns, err error) {
	if k.Feed == "" {
		k.Feed = apitype.MainFeed
	}
	if !validKey(k.Key) {
		return kc, fmt.Errorf("key %q: %w", k.Key, ErrInvalidInput)
	}
	if k.Limit < 0 {
		return kc, fmt.Errorf("key %s: negative server limit: %w", MaskKey(k.Key), ErrInvalidInput)
	}
	if k.Sticky != "" {
		if kc.stickyUntil, err = config.StickyEnd(k.Sticky); err != nil {
			return kc, fmt.Errorf("key %s: %v: %w", MaskKey(k.Key), err, ErrInvalidInput)
		}
	}
	ranges := make([]string, 0, len(k.IPRanges))
	for _, r := range k.IPRanges {
		p, err := parseCIDR(r)
		if err != nil {
			return kc, fmt.Errorf("key %s: %w", MaskKey(k.Key), err)
		}
		ranges = append(ranges, p.String())
	}
	k.IPRanges = nil
	if len(ranges) > 0 {
		k.IPRanges = ranges
	}
	b, err := json.Marshal(ranges)
	kc.ranges = string(b)
	return kc, err
}

func (s *sqlStore) AddKey(ctx context.Context, k *Key) error {
	kc, err := checkKey(k)
	if err != nil {
		return fmt.Errorf("add key: %w", err)
	}
	if k.Created.IsZero() {
		k.Created = now()
	}
	k.Created = norm(k.Created)
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := feedChannel(ctx, tx, k.Feed); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO keys (key, note, server_limit, feed, sticky, ip_ranges, created, sticky_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, k.Key, k.Note, k.Limit, k.Feed, k.Sticky, kc.ranges, s.d.t(k.Created), s.d.t(kc.stickyUntil))
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add key %s: %w", MaskKey(k.Key), err)
	}
	return nil
}

// keyCols are a key's columns with its server count, which triggers keep
// (migration 6).
const keyCols = keySettingsCols + `, k.server_count`

// keySettingsCols are a key's own columns, without its server count.
const keySettingsCols = `k.key, k.note, k.server_limit, k.feed, k.sticky, k.ip_ranges, k.created`

func scanKey(r scanner) (Key, error) { return scanKeyCols(r, true) }

func scanKeyCols(r scanner, count bool) (Key, error) {
	var k Key
	var ranges string
	dest := []any{&k.Key, &k.Note, &k.Limit, &k.Feed, &k.Sticky, &ranges, timeCol{&k.Created}}
	if count {
		dest = append(dest, &k.Servers)
	}
	err := r.Scan(dest...)
	if err != nil {
		return k, err
	}
	if err := json.Unmarshal([]byte(ranges), &k.IPRanges); err != nil {
		return k, fmt.Errorf("key %s: ip ranges: %w", MaskKey(k.Key), err)
	}
	if len(k.IPRanges) == 0 {
		k.IPRanges = nil
	}
	return k, nil
}

func (s *sqlStore) Key(ctx context.Context, key string) (*Key, error) {
	return queryOne(ctx, s.r, "key "+MaskKey(key), scanKey, `SELECT `+keyCols+` FROM keys k WHERE k.key = $1`, key)
}

func (s *sqlStore) KeySettings(ctx context.Context, key string) (*Key, error) {
	return queryOne(ctx, s.r, "key "+MaskKey(key), func(r scanner) (Key, error) { return scanKeyCols(r, false) },
		`SELECT `+keySettingsCols+` FROM keys k WHERE k.key = $1`, key)
}

func (s *sqlStore) KeyList(ctx context.Context) ([]Key, error) {
	return queryAll(ctx, s.r, "keys", func(r scanner) (Key, error) { return scanKeyCols(r, false) },
		`SELECT `+keySettingsCols+` FROM keys k ORDER BY k.created, k.key`)
}

func (s *sqlStore) Keys(ctx context.Context) ([]Key, error) {
	return queryAll(ctx, s.r, "keys", scanKey, `SELECT `+keyCols+` FROM keys k ORDER BY k.created, k.key`)
}

func (s *sqlStore) UpdateKey(ctx context.Context, k *Key) error {
	kc, err := checkKey(k)
	if err != nil {
		return fmt.Errorf("update key: %w", err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := feedChannel(ctx, tx, k.Feed); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `UPDATE keys SET note = $2, server_limit = $3, feed = $4, sticky = $5,
	ip_ranges = $6, sticky_until = $7 WHERE key = $1`, k.Key, k.Note, k.Limit, k.Feed, k.Sticky, kc.ranges, s.d.t(kc.stickyUntil)))
	})
	if err != nil {
		return fmt.Errorf("update key %s: %w", MaskKey(k.Key), err)
	}
	return nil
}

func (s *sqlStore) DeleteKey(ctx context.Context, key string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM servers WHERE key = $1`, key); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `DELETE FROM keys WHERE key = $1`, key))
	})
	if err != nil {
		return fmt.Errorf("delete key %s: %w", MaskKey(key), err)
	}
	return nil
}
