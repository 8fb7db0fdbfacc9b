package core

import (
	"context"
	"time"

	"github.com/kcare/kcare/internal/portal/store"
)

// Web UI sessions live in the store, so that every replica of a portal
// knows them; only the hash of a session's cookie is kept.

// AddSession records a signed-in user's session.
func (c *Core) AddSession(ctx context.Context, s *store.Session) error {
	if s.Created.IsZero() {
		s.Created = c.Now()
	}
	return c.st.AddSession(ctx, s)
}

// Session returns the session with the id hash; store.ErrNotFound if none.
func (c *Core) Session(ctx context.Context, idHash []byte) (*store.Session, error) {
	return c.st.Session(ctx, idHash)
}

// TouchSession records that a session was used at the portal's now.
func (c *Core) TouchSession(ctx context.Context, idHash []byte) error {
	return c.st.TouchSession(ctx, idHash, c.Now())
}

// EndSession deletes a session: signing out, or its time is up.
func (c *Core) EndSession(ctx context.Context, idHash []byte) error {
	return c.st.DeleteSession(ctx, idHash)
}

// EndSessionsIdle deletes the sessions last used more than age ago.
func (c *Core) EndSessionsIdle(ctx context.Context, age time.Duration) (int, error) {
	return c.st.DeleteSessions(ctx, c.Now().Add(-age))
}

// Replicated reports whether the portal's store is one that several
// replicas share (PostgreSQL): what a single portal may keep in its
// memory (the failed sign-ins) the replicas keep there, so that they count
// together.
func (c *Core) Replicated() bool { return c.st.Kind() == "postgres" }

// SignInFailures are the failed sign-ins counted under keys, for those
// that have any.
func (c *Core) SignInFailures(ctx context.Context, keys ...[]byte) ([]store.SignInFailure, error) {
	return c.st.SignInFailures(ctx, keys...)
}

// CountSignInFailure counts a failed sign-in under each of keys, as count
// turns each key's record into the new one.
func (c *Core) CountSignInFailure(ctx context.Context, count func(f *store.SignInFailure), keys ...[]byte) error {
	return c.st.CountSignInFailure(ctx, count, keys...)
}

// ForgetSignInFailures forgets the failed sign-ins under key, and those of
// every key last counted before before.
func (c *Core) ForgetSignInFailures(ctx context.Context, key []byte, before time.Time) error {
	return c.st.ForgetSignInFailures(ctx, key, before)
}
