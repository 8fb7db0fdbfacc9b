package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Users and tokens.

func (s *sqlStore) AddUser(ctx context.Context, u *User) error {
	switch {
	case !validName(u.Name):
		return fmt.Errorf("add user %q: %w", u.Name, ErrInvalidInput)
	case !u.Role.Valid():
		return fmt.Errorf("add user %s: role %q: %w", u.Name, u.Role, ErrInvalidInput)
	}
	if u.Created.IsZero() {
		u.Created = now()
	}
	u.Created = norm(u.Created)
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (name, password_hash, role, created) VALUES ($1, $2, $3, $4)`,
			u.Name, u.PasswordHash, u.Role, s.d.t(u.Created))
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add user %s: %w", u.Name, err)
	}
	return nil
}

func scanUser(r scanner) (User, error) {
	var u User
	err := r.Scan(&u.Name, &u.PasswordHash, &u.Role, timeCol{&u.Created})
	return u, err
}

func (s *sqlStore) User(ctx context.Context, name string) (*User, error) {
	return queryOne(ctx, s.r, "user "+name, scanUser, `SELECT name, password_hash, role, created FROM users WHERE name = $1`, name)
}

func (s *sqlStore) Users(ctx context.Context) ([]User, error) {
	return queryAll(ctx, s.r, "users", scanUser, `SELECT name, password_hash, role, created FROM users ORDER BY name`)
}

func (s *sqlStore) DeleteUser(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_name = $1`, name); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `DELETE FROM users WHERE name = $1`, name))
	})
	if err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	return nil
}

func (s *sqlStore) AddToken(ctx context.Context, t *Token) error {
	if len(t.Hash) == 0 {
		return fmt.Errorf("add token for %s: no hash: %w", t.User, ErrInvalidInput)
	}
	if t.Created.IsZero() {
		t.Created = now()
	}
	t.Created = norm(t.Created)
	err := s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE name = $1`, t.User).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %s: %w", t.User, ErrNotFound)
		}
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `INSERT INTO tokens (hash, user_name, note, created) VALUES ($1, $2, $3, $4)
RETURNING id`, t.Hash, t.User, t.Note, s.d.t(t.Created)).Scan(&t.ID)
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add token for %s: %w", t.User, err)
	}
	return nil
}

const tokenCols = `id, hash, user_name, note, created`

func scanToken(r scanner) (t Token, err error) {
	return t, r.Scan(&t.ID, &t.Hash, &t.User, &t.Note, timeCol{&t.Created})
}

func (s *sqlStore) TokenByHash(ctx context.Context, hash []byte) (*Token, error) {
	return queryOne(ctx, s.r, "token", scanToken, `SELECT `+tokenCols+` FROM tokens WHERE hash = $1`, hash)
}

func (s *sqlStore) DeleteToken(ctx context.Context, id int64) error {
	n, err := s.exec(ctx, `DELETE FROM tokens WHERE id = $1`, id)
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete token %d: %w", id, err)
	}
	return nil
}

func (s *sqlStore) Tokens(ctx context.Context, user string) ([]Token, error) {
	if user == "" {
		return queryAll(ctx, s.r, "tokens", scanToken, `SELECT `+tokenCols+` FROM tokens ORDER BY id`)
	}
	return queryAll(ctx, s.r, "tokens of "+user, scanToken, `SELECT `+tokenCols+` FROM tokens WHERE user_name = $1 ORDER BY id`, user)
}
