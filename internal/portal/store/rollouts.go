package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrChanged is a change to a rollout that another change came before:
// its state or wave are no longer those the caller saw.
var ErrChanged = errors.New("changed meanwhile")

// FeedRollout is a feed's rollout policy: its waves ("1,10,50,100"; ""
// releases every patchset at once) and the rest of the policy, JSON the
// core reads (rollout.Policy).
type FeedRollout struct {
	Feed   string
	Waves  string
	Policy string
}

// Rollout is the release of a patchset in a feed in waves. It begins,
// in state "running" at wave 0, in the transaction that first enables a
// patchset in a feed whose policy has waves; its times are stamped by
// the core's clock (StampRollouts), and until then it gives its level to
// no server.
type Rollout struct {
	ID          int64
	Feed        string
	Patchset    string
	Waves       string // the feed's waves when it began
	Wave        int    // the current wave, from 0
	State       string // running, paused, halted, rolled-back, done
	Reason      string // why it is in its state, as the last change said
	Started     time.Time
	WaveStarted time.Time
	Updated     time.Time
	Urgent      bool // the patchset is urgent
}

// RolloutMember is a server of a rollout's population as its check-ins
// left it.
type RolloutMember struct {
	ID          string
	BuildID     string
	Level       int
	LastCheckin time.Time
	Health      *Health // nil: it never reported any
}

// RolloutSample is a rollout's state at a moment, for its chart: JSON
// the core writes.
type RolloutSample struct {
	At     time.Time
	Sample string
}

// CoverageDay is the fleet's patch state on a day (UTC), as the last
// count of the day found it.
type CoverageDay struct {
	Day                                               string // YYYY-MM-DD
	Total, UpToDate, OutOfDate, Unsupported, Inactive int
}

// RolloutStore keeps the feeds' rollout policies and the rollouts, the
// keys' maintenance windows, which patchsets are urgent, and the fleet's
// coverage by day.
type RolloutStore interface {
	// FeedRollout returns a feed's policy; ErrNotFound when it has none.
	FeedRollout(ctx context.Context, feed string) (*FeedRollout, error)
	FeedRollouts(ctx context.Context) ([]FeedRollout, error)
	// SetFeedRollout sets a feed's policy (an unknown feed is
	// ErrNotFound). Rollouts already under way keep their waves.
	SetFeedRollout(ctx context.Context, fr *FeedRollout) error

	// Rollouts lists the rollouts of feed ("" every feed), the active
	// ones only (not done) when active is set, oldest first.
	Rollouts(ctx context.Context, feed string, active bool) ([]Rollout, error)
	Rollout(ctx context.Context, id int64) (*Rollout, error)
	// UpdateRollout sets r's state, wave, reason, wave start and update
	// time, if it is still in state and wave as the caller saw it; else
	// ErrChanged.
	UpdateRollout(ctx context.Context, r *Rollout, state string, wave int) error
	// StampRollouts sets the start times of rollouts that have none yet
	// to at, and returns how many; the store's version moves when it
	// stamps any.
	StampRollouts(ctx context.Context, at time.Time) (int, error)
	// PatchsetTargets returns, for each kernel (build-id) a patchset has
	// levels for, the highest of them.
	PatchsetTargets(ctx context.Context, patchset string) (map[string]int, error)
	// RolloutMembers returns the servers of feed running a kernel among
	// buildIDs, with their health.
	RolloutMembers(ctx context.Context, feed string, buildIDs []string) ([]RolloutMember, error)
	AddRolloutSample(ctx context.Context, id int64, s RolloutSample) error
	// RolloutSamples returns a rollout's samples, oldest first.
	RolloutSamples(ctx context.Context, id int64) ([]RolloutSample, error)

	// SetPatchsetUrgent marks a patchset urgent, or not.
	SetPatchsetUrgent(ctx context.Context, patchset string, urgent bool) error
	// KeyWindows returns every key's own maintenance window, by key.
	KeyWindows(ctx context.Context) (map[string]string, error)
	// SetKeyWindow sets a key's window; "" removes it.
	SetKeyWindow(ctx context.Context, key, spec string) error

	// RecordCoverage records a day's count, replacing an earlier one of
	// the same day.
	RecordCoverage(ctx context.Context, d CoverageDay) error
	// Coverage returns the days from from to to (YYYY-MM-DD, both
	// included) that have a count, oldest first.
	Coverage(ctx context.Context, from, to string) ([]CoverageDay, error)
}

// startRollouts begins, in tx, a rollout of patchset in each feed that
// feeds (a query of feed names, with its arguments after $1) selects
// and whose policy has waves, unless one exists.
func startRollouts(ctx context.Context, tx *sql.Tx, patchset, feeds string, args ...any) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO rollouts (feed, patchset, waves, wave, state, reason)
SELECT fr.feed, $1, fr.waves, 0, 'running', '' FROM feed_rollout fr
WHERE fr.waves <> '' AND fr.feed IN (`+feeds+`)
ON CONFLICT (feed, patchset) DO NOTHING`, append([]any{patchset}, args...)...)
	return err
}

func (s *sqlStore) FeedRollout(ctx context.Context, feed string) (*FeedRollout, error) {
	return queryOne(ctx, s.r, "rollout policy of feed "+feed, scanFeedRollout,
		`SELECT feed, waves, policy FROM feed_rollout WHERE feed = $1`, feed)
}

func (s *sqlStore) FeedRollouts(ctx context.Context) ([]FeedRollout, error) {
	return queryAll(ctx, s.r, "rollout policies", scanFeedRollout, `SELECT feed, waves, policy FROM feed_rollout ORDER BY feed`)
}

func scanFeedRollout(r scanner) (FeedRollout, error) {
	var fr FeedRollout
	return fr, r.Scan(&fr.Feed, &fr.Waves, &fr.Policy)
}

func (s *sqlStore) SetFeedRollout(ctx context.Context, fr *FeedRollout) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		if _, err := feedChannel(ctx, tx, fr.Feed); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO feed_rollout (feed, waves, policy) VALUES ($1, $2, $3)
ON CONFLICT (feed) DO UPDATE SET waves = excluded.waves, policy = excluded.policy`, fr.Feed, fr.Waves, fr.Policy)
		return err
	})
	if err != nil {
		return fmt.Errorf("set the rollout policy of feed %s: %w", fr.Feed, err)
	}
	return nil
}

const rolloutCols = `r.id, r.feed, r.patchset, r.waves, r.wave, r.state, r.reason, r.started, r.wave_started, r.updated, p.urgent`

func scanRollout(r scanner) (Rollout, error) {
	var v Rollout
	return v, r.Scan(&v.ID, &v.Feed, &v.Patchset, &v.Waves, &v.Wave, &v.State, &v.Reason,
		timeCol{&v.Started}, timeCol{&v.WaveStarted}, timeCol{&v.Updated}, &v.Urgent)
}

func (s *sqlStore) Rollouts(ctx context.Context, feed string, active bool) ([]Rollout, error) {
	var where []string
	var args []any
	if feed != "" {
		args = append(args, feed)
		where = append(where, fmt.Sprintf("r.feed = $%d", len(args)))
	}
	if active {
		where = append(where, "r.state <> 'done'")
	}
	q := `SELECT ` + rolloutCols + ` FROM rollouts r JOIN patchsets p ON p.name = r.patchset`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return queryAll(ctx, s.r, "rollouts", scanRollout, q+` ORDER BY r.id`, args...)
}

func (s *sqlStore) Rollout(ctx context.Context, id int64) (*Rollout, error) {
	return queryOne(ctx, s.r, fmt.Sprintf("rollout %d", id), scanRollout,
		`SELECT `+rolloutCols+` FROM rollouts r JOIN patchsets p ON p.name = r.patchset WHERE r.id = $1`, id)
}

func (s *sqlStore) UpdateRollout(ctx context.Context, r *Rollout, state string, wave int) error {
	r.WaveStarted, r.Updated = norm(r.WaveStarted), norm(r.Updated)
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE rollouts SET state = $2, wave = $3, reason = $4, wave_started = $5, updated = $6
WHERE id = $1 AND state = $7 AND wave = $8`, r.ID, r.State, r.Wave, r.Reason, s.d.t(r.WaveStarted), s.d.t(r.Updated), state, wave)
		if err := affected(res, err); errors.Is(err, ErrNotFound) {
			return ErrChanged
		} else if err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rollout %d: %w", r.ID, err)
	}
	return nil
}

func (s *sqlStore) StampRollouts(ctx context.Context, at time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE rollouts SET started = $1, wave_started = $1, updated = $1 WHERE started IS NULL`, s.d.t(at))
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		// The index answers hold a rollout's level back until it has
		// begun: they change now.
		return bump(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("stamp rollouts: %w", err)
	}
	return int(n), nil
}

func (s *sqlStore) PatchsetTargets(ctx context.Context, patchset string) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT build_id, MAX(level) FROM levels WHERE patchset = $1 GROUP BY build_id`, patchset)
	if err != nil {
		return nil, fmt.Errorf("levels of patchset %s: %w", patchset, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var b string
		var l int
		if err := rows.Scan(&b, &l); err != nil {
			return nil, fmt.Errorf("levels of patchset %s: %w", patchset, err)
		}
		out[b] = l
	}
	return out, rows.Err()
}

func (s *sqlStore) RolloutMembers(ctx context.Context, feed string, buildIDs []string) ([]RolloutMember, error) {
	if len(buildIDs) == 0 {
		return nil, nil
	}
	args := []any{feed}
	marks := make([]string, len(buildIDs))
	for i, b := range buildIDs {
		args = append(args, b)
		marks[i] = fmt.Sprintf("$%d", i+2)
	}
	return queryAll(ctx, s.r, "servers of feed "+feed, func(r scanner) (RolloutMember, error) {
		var m RolloutMember
		var hs healthScan
		var bootID sql.NullString
		dest := append([]any{&m.ID, &m.BuildID, &m.Level, timeCol{&m.LastCheckin}, &bootID}, hs.nullable()...)
		if err := r.Scan(dest...); err != nil {
			return m, err
		}
		if bootID.Valid {
			m.Health = hs.done()
		}
		return m, nil
	}, `SELECT s.id, s.build_id, s.level, s.last_checkin, h.boot_id, `+healthCols+`
FROM servers s LEFT JOIN keys k ON k.key = s.key LEFT JOIN server_health h ON h.server_id = s.id
WHERE COALESCE(k.feed, s.ip_feed, 'main') = $1 AND s.build_id IN (`+strings.Join(marks, ", ")+`)
ORDER BY s.id`, args...)
}

func (s *sqlStore) AddRolloutSample(ctx context.Context, id int64, v RolloutSample) error {
	if _, err := s.exec(ctx, `INSERT INTO rollout_samples (rollout_id, at, sample) VALUES ($1, $2, $3)`, id, s.d.t(v.At), v.Sample); err != nil {
		return fmt.Errorf("sample rollout %d: %w", id, err)
	}
	return nil
}

func (s *sqlStore) RolloutSamples(ctx context.Context, id int64) ([]RolloutSample, error) {
	return queryAll(ctx, s.r, fmt.Sprintf("samples of rollout %d", id), func(r scanner) (RolloutSample, error) {
		var v RolloutSample
		return v, r.Scan(timeCol{&v.At}, &v.Sample)
	}, `SELECT at, sample FROM rollout_samples WHERE rollout_id = $1 ORDER BY at`, id)
}

func (s *sqlStore) SetPatchsetUrgent(ctx context.Context, patchset string, urgent bool) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		return affected(tx.ExecContext(ctx, `UPDATE patchsets SET urgent = $2 WHERE name = $1`, patchset, urgent))
	})
	if err != nil {
		return fmt.Errorf("patchset %s: %w", patchset, err)
	}
	return nil
}

func (s *sqlStore) KeyWindows(ctx context.Context) (map[string]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT key, spec FROM key_windows`)
	if err != nil {
		return nil, fmt.Errorf("keys' maintenance windows: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, spec string
		if err := rows.Scan(&k, &spec); err != nil {
			return nil, fmt.Errorf("keys' maintenance windows: %w", err)
		}
		out[k] = spec
	}
	return out, rows.Err()
}

func (s *sqlStore) SetKeyWindow(ctx context.Context, key, spec string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := bump(ctx, tx); err != nil {
			return err
		}
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM keys WHERE key = $1`, key).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if spec == "" {
			_, err := tx.ExecContext(ctx, `DELETE FROM key_windows WHERE key = $1`, key)
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO key_windows (key, spec) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET spec = excluded.spec`, key, spec)
		return err
	})
	if err != nil {
		return fmt.Errorf("maintenance window of key %s: %w", MaskKey(key), err)
	}
	return nil
}

func (s *sqlStore) RecordCoverage(ctx context.Context, d CoverageDay) error {
	_, err := s.exec(ctx, `INSERT INTO coverage_days (day, total, uptodate, outofdate, unsupported, inactive)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (day) DO UPDATE SET total = excluded.total, uptodate = excluded.uptodate, outofdate = excluded.outofdate,
	unsupported = excluded.unsupported, inactive = excluded.inactive`,
		d.Day, d.Total, d.UpToDate, d.OutOfDate, d.Unsupported, d.Inactive)
	if err != nil {
		return fmt.Errorf("record the coverage of %s: %w", d.Day, err)
	}
	return nil
}

func (s *sqlStore) Coverage(ctx context.Context, from, to string) ([]CoverageDay, error) {
	return queryAll(ctx, s.r, "coverage", func(r scanner) (CoverageDay, error) {
		var d CoverageDay
		return d, r.Scan(&d.Day, &d.Total, &d.UpToDate, &d.OutOfDate, &d.Unsupported, &d.Inactive)
	}, `SELECT day, total, uptodate, outofdate, unsupported, inactive FROM coverage_days WHERE day >= $1 AND day <= $2 ORDER BY day`, from, to)
}
