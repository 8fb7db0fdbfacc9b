package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// Reseller is a login that owns IP ranges: KernelCare's reseller (IP
// license) monitoring, /api/kcare/nagios-res/{login}/{token}.
type Reseller struct {
	Login     string
	TokenHash []byte // sha256 of its API token; nil before one is made
	CIDRs     []string
	Created   time.Time
}

// ResellerStore keeps the resellers.
type ResellerStore interface {
	AddReseller(ctx context.Context, r *Reseller) error
	Reseller(ctx context.Context, login string) (*Reseller, error)
	Resellers(ctx context.Context) ([]Reseller, error)
	SetResellerToken(ctx context.Context, login string, hash []byte) error
	DeleteReseller(ctx context.Context, login string) error
}

var loginRE = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,100}$`)

// AddReseller adds a reseller with its IP ranges.
func (s *sqlStore) AddReseller(ctx context.Context, r *Reseller) error {
	if !loginRE.MatchString(r.Login) {
		return fmt.Errorf("%w: reseller login %q", ErrInvalidInput, r.Login)
	}
	var cidrs []string
	for _, c := range r.CIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return fmt.Errorf("%w: CIDR %q", ErrInvalidInput, c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cidrs = append(cidrs, p.Masked().String())
	}
	r.CIDRs = cidrs
	r.Created = norm(r.Created)
	if r.Created.IsZero() {
		r.Created = now()
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM resellers WHERE login = $1`, r.Login).Scan(&one)
		if err == nil {
			return fmt.Errorf("reseller %s: %w", r.Login, ErrExists)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO resellers (login, token_hash, created) VALUES ($1, $2, $3)`,
			r.Login, r.TokenHash, s.d.t(r.Created)); err != nil {
			return err
		}
		for _, c := range cidrs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO reseller_cidrs (login, cidr) VALUES ($1, $2) ON CONFLICT DO NOTHING`, r.Login, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// Reseller reads one reseller.
func (s *sqlStore) Reseller(ctx context.Context, login string) (*Reseller, error) {
	r := Reseller{Login: login}
	err := s.r.QueryRowContext(ctx, `SELECT token_hash, created FROM resellers WHERE login = $1`, login).
		Scan(&r.TokenHash, timeCol{&r.Created})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("reseller %s: %w", login, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	r.CIDRs, err = queryAll(ctx, s.r, "IP ranges of reseller "+login, func(sc scanner) (c string, err error) {
		return c, sc.Scan(&c)
	}, `SELECT cidr FROM reseller_cidrs WHERE login = $1 ORDER BY cidr`, login)
	return &r, err
}

// Resellers lists every reseller.
func (s *sqlStore) Resellers(ctx context.Context) ([]Reseller, error) {
	logins, err := queryAll(ctx, s.r, "resellers", func(sc scanner) (l string, err error) {
		return l, sc.Scan(&l)
	}, `SELECT login FROM resellers ORDER BY login`)
	if err != nil {
		return nil, err
	}
	out := make([]Reseller, 0, len(logins))
	for _, l := range logins {
		r, err := s.Reseller(ctx, l)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}

// SetResellerToken stores the hash of a reseller's new API token.
func (s *sqlStore) SetResellerToken(ctx context.Context, login string, hash []byte) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		return affected(tx.ExecContext(ctx, `UPDATE resellers SET token_hash = $1 WHERE login = $2`, hash, login))
	})
}

// DeleteReseller removes a reseller.
func (s *sqlStore) DeleteReseller(ctx context.Context, login string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		return affected(tx.ExecContext(ctx, `DELETE FROM resellers WHERE login = $1`, login))
	})
}
