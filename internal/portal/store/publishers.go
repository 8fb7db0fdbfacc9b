package store

import (
	"context"
	"fmt"
)

func (s *sqlStore) AddPublisherKey(ctx context.Context, k *PublisherKey) error {
	if k.Fingerprint == "" || k.Armored == "" {
		return fmt.Errorf("add publisher key: no fingerprint or key: %w", ErrInvalidInput)
	}
	if k.Added.IsZero() {
		k.Added = now()
	}
	k.Added = norm(k.Added)
	_, err := s.exec(ctx, `INSERT INTO publisher_keys (fingerprint, name, armored, added) VALUES ($1, $2, $3, $4)`,
		k.Fingerprint, k.Name, k.Armored, s.d.t(k.Added))
	if isUnique(err) {
		err = ErrExists
	}
	if err != nil {
		return fmt.Errorf("add publisher key %s: %w", k.Fingerprint, err)
	}
	return nil
}

func (s *sqlStore) PublisherKeys(ctx context.Context) ([]PublisherKey, error) {
	return queryAll(ctx, s.r, "publisher keys", func(r scanner) (k PublisherKey, err error) {
		return k, r.Scan(&k.Fingerprint, &k.Name, &k.Armored, timeCol{&k.Added})
	}, `SELECT fingerprint, name, armored, added FROM publisher_keys ORDER BY added, fingerprint`)
}

func (s *sqlStore) DeletePublisherKey(ctx context.Context, fingerprint string) error {
	n, err := s.exec(ctx, `DELETE FROM publisher_keys WHERE fingerprint = $1`, fingerprint)
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete publisher key %s: %w", fingerprint, err)
	}
	return nil
}
