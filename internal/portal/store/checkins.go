package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Check-ins are group-committed: every agent's check-in waits in a queue,
// one goroutine writes all that are waiting in one transaction, and each
// caller returns only once that transaction has committed (or failed).
// The work of a commit (SQLite's WAL frames, PostgreSQL's WAL flush and
// round trips) is paid once per batch rather than once per agent, and no
// check-in is acknowledged before it is stored.
const (
	// checkinBatchMax bounds the check-ins one transaction writes.
	checkinBatchMax = 256
	// checkinBatchBound bounds one batch's transaction, retries included.
	checkinBatchBound = 30 * time.Second
)

// errClosed is a check-in made after the store closed.
var errClosed = errors.New("the store is closed")

// checkinReq is one check-in waiting for its batch.
type checkinReq struct {
	id   string
	c    Report
	done chan error // gets the check-in's own outcome, once
}

// committer runs the check-in batches of one store.
type committer struct {
	once sync.Once
	in   chan *checkinReq
	quit chan struct{}
	wg   sync.WaitGroup
}

// start starts the batch loop of s on first use.
func (cm *committer) start(s *sqlStore) {
	cm.once.Do(func() {
		cm.in = make(chan *checkinReq, checkinBatchMax)
		cm.quit = make(chan struct{})
		cm.wg.Add(1)
		s.prepareWrites(checkInTouch, checkInChange, checkInHistory, upsertHealth)
		go func() {
			defer cm.wg.Done()
			s.commitLoop(cm.in, cm.quit)
		}()
	})
}

// stop ends the batch loop, if it started, once the batch under way is
// written.
func (cm *committer) stop() {
	cm.once.Do(func() {}) // a loop not started now never starts
	if cm.quit != nil {
		close(cm.quit)
		cm.wg.Wait()
	}
}

// commitLoop writes the check-ins from in, each batch all that waited
// while the one before was written, until quit closes.
func (s *sqlStore) commitLoop(in chan *checkinReq, quit chan struct{}) {
	batch := make([]*checkinReq, 0, checkinBatchMax)
	for {
		select {
		case <-quit:
			return
		case r := <-in:
			batch = append(batch[:0], r)
		}
	more:
		for len(batch) < checkinBatchMax {
			select {
			case r := <-in:
				batch = append(batch, r)
			default:
				break more
			}
		}
		s.commitBatch(batch)
	}
}

// commitBatch writes a batch in one transaction and tells each caller its
// outcome. When the transaction fails as a whole, each check-in is written
// again in one of its own, so that one bad check-in fails alone.
func (s *sqlStore) commitBatch(batch []*checkinReq) {
	ctx, cancel := context.WithTimeout(context.Background(), checkinBatchBound)
	defer cancel()
	outcome := make([]error, len(batch))
	err := s.write(ctx, func(tx *sql.Tx) error {
		for i, r := range batch {
			outcome[i] = s.checkInTx(ctx, tx, r.id, r.c)
			if outcome[i] != nil && !errors.Is(outcome[i], ErrNotFound) {
				return outcome[i]
			}
		}
		return nil
	})
	if err != nil && len(batch) > 1 {
		for i, r := range batch {
			outcome[i] = s.write(ctx, func(tx *sql.Tx) error { return s.checkInTx(ctx, tx, r.id, r.c) })
		}
	} else if err != nil {
		outcome[0] = err
	}
	for i, r := range batch {
		r.done <- outcome[i]
	}
}

// checkInTouch records a check-in that reports what the server's row
// already holds: only the check-in time changes, and no index of the
// columns it leaves alone is written.
const checkInTouch = `UPDATE servers SET last_checkin = $2
WHERE id = $1 AND hostname = $3 AND ip = $4 AND kernel_release = $5 AND build_id = $6 AND kernel_id = $7
	AND level = $8 AND effective_release = $9 AND last_result = $10 AND agent_version = $11 AND tags = COALESCE($12, tags)`

// checkInChange records a check-in that reports a change; a new level (or
// kernel) is when the server was updated.
const checkInChange = `UPDATE servers SET hostname = $3, ip = $4, kernel_release = $5, build_id = $6,
	kernel_id = $7, level = $8, effective_release = $9, last_result = $10, agent_version = $11,
	tags = COALESCE($12, tags), last_checkin = $2,
	updated = CASE WHEN $8 > 0 AND (level <> $8 OR build_id <> $6) THEN $2 ELSE updated END WHERE id = $1`

// checkInHistory adds a line to a server's history.
const checkInHistory = `INSERT INTO checkins (server_id, at, level, effective_release, result) VALUES ($1, $2, $3, $4, $5)`

// checkInTx writes one check-in in tx: the server's row, and a history
// line when it reported a change, and the health it reports. An unknown
// id is ErrNotFound.
func (s *sqlStore) checkInTx(ctx context.Context, tx *sql.Tx, id string, c Report) error {
	var tags any
	if c.Tags != nil {
		tags = *c.Tags
	}
	at := s.d.t(c.At)
	args := []any{id, at, c.Hostname, c.IP, c.Release, c.BuildID, c.KernelID, c.Level, c.EffectiveRelease,
		c.LastResult, c.AgentVersion, tags}
	res, err := s.hotExec(ctx, tx, checkInTouch, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n > 0 {
		if c.Health == nil {
			return nil
		}
		return s.recordHealth(ctx, tx, id, c.Health, c.At)
	}
	if err := affected(s.hotExec(ctx, tx, checkInChange, args...)); err != nil {
		return err
	}
	if _, err = s.hotExec(ctx, tx, checkInHistory, id, at, c.Level, c.EffectiveRelease, c.LastResult); err != nil || c.Health == nil {
		return err
	}
	return s.recordHealth(ctx, tx, id, c.Health, c.At)
}

func (s *sqlStore) CheckIn(ctx context.Context, id string, c Report) error {
	if c.At.IsZero() {
		c.At = time.Now()
	}
	s.commits.start(s)
	r := &checkinReq{id: id, c: c, done: make(chan error, 1)}
	select {
	case s.commits.in <- r:
	case <-s.commits.quit:
		return fmt.Errorf("check in server %s: %w", id, errClosed)
	case <-ctx.Done():
		return ctx.Err()
	}
	var err error
	select {
	case err = <-r.done:
	case <-ctx.Done():
		// The batch may still write it; it is not acknowledged.
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("check in server %s: %w", id, err)
	}
	return nil
}
