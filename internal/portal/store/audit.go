package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Audit log.

func (s *sqlStore) Audit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = now()
	}
	_, err := s.exec(ctx, `INSERT INTO audit (at, actor, action, object, detail, ip, before_json, after_json)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		s.d.t(e.At), e.Actor, e.Action, e.Object, e.Detail, e.IP, e.Before, e.After)
	if err != nil {
		return fmt.Errorf("audit %s %s: %w", e.Action, e.Object, err)
	}
	return nil
}

func (s *sqlStore) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	return s.AuditQuery(ctx, AuditFilter{Limit: limit})
}

func (s *sqlStore) AuditQuery(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Actor != "" {
		where = append(where, `actor = `+arg(f.Actor))
	}
	if f.Object != "" {
		where = append(where, `object `+s.d.like+` `+arg(likeEscape(f.Object))+` ESCAPE '\'`)
	}
	if f.Action != "" {
		where = append(where, `action LIKE `+arg(strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(f.Action)+"%")+` ESCAPE '\'`)
	}
	if !f.From.IsZero() {
		where = append(where, `at >= `+arg(s.d.t(f.From)))
	}
	if !f.To.IsZero() {
		where = append(where, `at < `+arg(s.d.t(f.To)))
	}
	if f.BeforeID > 0 {
		where = append(where, `id < `+arg(f.BeforeID))
	}
	q := `SELECT id, at, actor, action, object, detail, ip, before_json, after_json FROM audit`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ` + arg(f.Limit)
	}
	return queryAll(ctx, s.r, "audit log", func(r scanner) (e AuditEntry, err error) {
		return e, r.Scan(&e.ID, timeCol{&e.At}, &e.Actor, &e.Action, &e.Object, &e.Detail, &e.IP, &e.Before, &e.After)
	}, q, args...)
}
