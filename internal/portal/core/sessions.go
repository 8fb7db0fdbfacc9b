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
