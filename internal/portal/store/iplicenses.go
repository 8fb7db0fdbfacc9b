package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/kcare/kcare/internal/apitype"
)

func (s *sqlStore) AddIPLicense(ctx context.Context, l *IPLicense) error {
	p, err := parseCIDR(l.CIDR)
	if err != nil {
		return fmt.Errorf("add IP license: %w", err)
	}
	l.CIDR = p.String()
	if l.Feed == "" {
		l.Feed = apitype.MainFeed
	}
	if l.Created.IsZero() {
		l.Created = now()
	}
	l.Created = norm(l.Created)
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := feedChannel(ctx, tx, l.Feed); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO ip_licenses (cidr, feed, note, created) VALUES ($1, $2, $3, $4)`,
			l.CIDR, l.Feed, l.Note, s.d.t(l.Created))
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add IP license %s: %w", l.CIDR, err)
	}
	return nil
}

func (s *sqlStore) IPLicenses(ctx context.Context) ([]IPLicense, error) {
	return queryAll(ctx, s.r, "IP licenses", func(r scanner) (l IPLicense, err error) {
		return l, r.Scan(&l.CIDR, &l.Feed, &l.Note, timeCol{&l.Created})
	}, `SELECT cidr, feed, note, created FROM ip_licenses ORDER BY created, cidr`)
}

func (s *sqlStore) DeleteIPLicense(ctx context.Context, cidr string) error {
	if p, err := parseCIDR(cidr); err == nil {
		cidr = p.String()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `DELETE FROM ip_licenses WHERE cidr = $1`, cidr))
	})
	if err != nil {
		return fmt.Errorf("delete IP license %s: %w", cidr, err)
	}
	return nil
}
