package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/kcare/kcare/internal/portal/rollout"
	"github.com/kcare/kcare/internal/taint"
)

// Health is a server's kernel health as its check-ins report it: the
// kernel's state at the last check-in, and at its last apply.
type Health struct {
	BootID string
	// Booted is when the present boot began: the check-in time less the
	// uptime, at the first check-in of the boot.
	Booted           time.Time
	Taint            taint.Mask
	Warnings, Oopses int64 // since boot; -1 unknown
	CountsFrom       string
	Level            int    // the level the check-in reported
	Apply            *Apply // the last apply; nil before the first
	// Rebooted is when a check-in first reported the present boot after
	// another one; zero when none ever has. RebootedLevel is the level
	// the server had before that boot.
	Rebooted      time.Time
	RebootedLevel int
	Updated       time.Time // the last check-in that changed any of the above
}

// Apply is one apply and the kernel's health just before it, as the
// rollout rules read it.
type Apply = rollout.Apply

// upsertHealth records the health a check-in reports, at $18 (the
// check-in time). A check-in from another boot than the one recorded
// notes the reboot and the level the server had before it. A check-in
// that changes nothing writes nothing.
const upsertHealth = `INSERT INTO server_health (server_id, boot_id, booted, taint, warn_count, oops_count, counts_from,
	level, apply_level, apply_ok, apply_at, apply_boot_id, apply_taint, apply_warn_count, apply_oops_count,
	rebooted, rebooted_level, updated)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL, 0, $16)
ON CONFLICT (server_id) DO UPDATE SET
	rebooted = CASE WHEN server_health.boot_id <> excluded.boot_id THEN excluded.updated ELSE server_health.rebooted END,
	rebooted_level = CASE WHEN server_health.boot_id <> excluded.boot_id THEN server_health.level ELSE server_health.rebooted_level END,
	booted = CASE WHEN server_health.boot_id <> excluded.boot_id THEN excluded.booted ELSE server_health.booted END,
	boot_id = excluded.boot_id, taint = excluded.taint, warn_count = excluded.warn_count,
	oops_count = excluded.oops_count, counts_from = excluded.counts_from, level = excluded.level,
	apply_level = excluded.apply_level, apply_ok = excluded.apply_ok, apply_at = excluded.apply_at,
	apply_boot_id = excluded.apply_boot_id, apply_taint = excluded.apply_taint,
	apply_warn_count = excluded.apply_warn_count, apply_oops_count = excluded.apply_oops_count,
	updated = excluded.updated
WHERE server_health.boot_id <> excluded.boot_id OR server_health.taint <> excluded.taint
	OR server_health.warn_count <> excluded.warn_count OR server_health.oops_count <> excluded.oops_count
	OR server_health.counts_from <> excluded.counts_from OR server_health.level <> excluded.level
	OR server_health.apply_level <> excluded.apply_level OR server_health.apply_ok <> excluded.apply_ok
	OR server_health.apply_boot_id <> excluded.apply_boot_id OR server_health.apply_taint <> excluded.apply_taint
	OR server_health.apply_warn_count <> excluded.apply_warn_count
	OR server_health.apply_oops_count <> excluded.apply_oops_count
	OR COALESCE(server_health.apply_at, excluded.apply_at) IS NOT NULL AND (server_health.apply_at IS NULL
		OR excluded.apply_at IS NULL OR server_health.apply_at <> excluded.apply_at)`

// healthArgs are the arguments of upsertHealth for h, reported at at.
func (s *sqlStore) healthArgs(id string, h *Health, at time.Time) []any {
	a := h.Apply
	if a == nil {
		a = &Apply{}
	}
	return []any{id, h.BootID, s.d.t(h.Booted), int64(h.Taint), h.Warnings, h.Oopses, h.CountsFrom, h.Level,
		a.Level, a.OK, s.d.t(a.At), a.BootID, int64(a.Taint), a.Warnings, a.Oopses, s.d.t(at)}
}

// recordHealth records h in tx, as reported at at.
func (s *sqlStore) recordHealth(ctx context.Context, tx *sql.Tx, id string, h *Health, at time.Time) error {
	_, err := s.hotExec(ctx, tx, upsertHealth, s.healthArgs(id, h, at)...)
	return err
}

func (s *sqlStore) RecordHealth(ctx context.Context, id string, h *Health, at time.Time) error {
	if at.IsZero() {
		at = now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error { return s.recordHealth(ctx, tx, id, h, at) })
	if isForeignKey(err) {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("record the health of server %s: %w", id, err)
	}
	return nil
}

const healthCols = `h.boot_id, h.booted, h.taint, h.warn_count, h.oops_count, h.counts_from, h.level,
	h.apply_level, h.apply_ok, h.apply_at, h.apply_boot_id, h.apply_taint, h.apply_warn_count, h.apply_oops_count,
	h.rebooted, h.rebooted_level, h.updated`

// healthScan scans healthCols into a Health; done fills it in.
type healthScan struct {
	h          Health
	a          Apply
	taint      int64
	applyTaint int64
}

func (hs *healthScan) dest() []any {
	return []any{&hs.h.BootID, timeCol{&hs.h.Booted}, &hs.taint, &hs.h.Warnings, &hs.h.Oopses, &hs.h.CountsFrom, &hs.h.Level,
		&hs.a.Level, &hs.a.OK, timeCol{&hs.a.At}, &hs.a.BootID, &hs.applyTaint, &hs.a.Warnings, &hs.a.Oopses,
		timeCol{&hs.h.Rebooted}, &hs.h.RebootedLevel, timeCol{&hs.h.Updated}}
}

// nullable is dest for a LEFT JOIN, where a server with no health has
// NULL in every column.
func (hs *healthScan) nullable() []any {
	d := hs.dest()
	for i, v := range d {
		switch p := v.(type) {
		case *string:
			d[i] = nullString{p}
		case *int64:
			d[i] = nullInt64{p}
		case *int:
			d[i] = nullInt{p}
		case *bool:
			d[i] = nullBool{p}
		}
	}
	return d
}

func (hs *healthScan) done() *Health {
	h := hs.h
	h.Taint = taint.Mask(hs.taint)
	if !hs.a.At.IsZero() {
		a := hs.a
		a.Taint = taint.Mask(hs.applyTaint)
		h.Apply = &a
	}
	return &h
}

func (s *sqlStore) ServerHealth(ctx context.Context, id string) (*Health, error) {
	var hs healthScan
	err := s.r.QueryRowContext(ctx, `SELECT `+healthCols+` FROM server_health h WHERE h.server_id = $1`, id).Scan(hs.dest()...)
	if err == sql.ErrNoRows {
		return nil, fmt.Errorf("health of server %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("health of server %s: %w", id, err)
	}
	return hs.done(), nil
}

// nullInt64, nullInt and nullBool scan a column where NULL is the zero
// value.
type (
	nullInt64 struct{ p *int64 }
	nullInt   struct{ p *int }
	nullBool  struct{ p *bool }
)

func (c nullInt64) Scan(src any) error {
	var n sql.NullInt64
	if err := n.Scan(src); err != nil {
		return err
	}
	*c.p = n.Int64
	return nil
}

func (c nullInt) Scan(src any) error {
	var n sql.NullInt64
	if err := n.Scan(src); err != nil {
		return err
	}
	*c.p = int(n.Int64)
	return nil
}

func (c nullBool) Scan(src any) error {
	var b sql.NullBool
	if err := b.Scan(src); err != nil {
		return err
	}
	*c.p = b.Bool
	return nil
}
