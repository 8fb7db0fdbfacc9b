package store

import (
	"context"
	"fmt"
	"time"
)

// What the web UI's overview and the feed pages count.

func (s *sqlStore) Stats(ctx context.Context, now time.Time, age time.Duration) (FleetStats, error) {
	var st FleetStats
	cut := s.d.t(now.Add(-age))
	err := s.r.QueryRowContext(ctx, `WITH `+s.allowedLevels(`$2`)+`,
known AS (SELECT DISTINCT build_id FROM levels)
SELECT COUNT(*),
	COALESCE(SUM(CASE WHEN s.last_checkin >= $1 THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN s.last_checkin >= $1 AND kn.build_id IS NULL THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN s.last_checkin >= $1 AND kn.build_id IS NOT NULL AND s.level < `+allowedLevel+` THEN 1 ELSE 0 END), 0)
FROM servers s`+allowedJoin+`
LEFT JOIN known kn ON kn.build_id = s.build_id`, cut, s.d.t(now)).Scan(&st.Total, &st.Active, &st.Unsupported, &st.OutOfDate)
	if err != nil {
		return st, fmt.Errorf("fleet stats: %w", err)
	}
	st.Inactive = st.Total - st.Active
	st.UpToDate = st.Active - st.Unsupported - st.OutOfDate
	return st, nil
}

func (s *sqlStore) counts(ctx context.Context, col string, limit int) ([]Count, error) {
	return queryAll(ctx, s.r, "count "+col, func(r scanner) (c Count, err error) {
		return c, r.Scan(&c.Value, &c.N)
	}, `SELECT `+col+`, COUNT(*) AS n FROM servers
WHERE `+col+` <> '' GROUP BY `+col+` ORDER BY n DESC, `+col+` LIMIT $1`, limit)
}

func (s *sqlStore) TopKernels(ctx context.Context, limit int) ([]Count, []Count, error) {
	k, err := s.counts(ctx, "kernel_release", limit)
	if err != nil {
		return nil, nil, fmt.Errorf("top kernels: %w", err)
	}
	e, err := s.counts(ctx, "effective_release", limit)
	if err != nil {
		return nil, nil, fmt.Errorf("top effective kernels: %w", err)
	}
	return k, e, nil
}

func (s *sqlStore) Kernels(ctx context.Context) ([]Kernel, error) {
	return queryAll(ctx, s.r, "kernels", func(r scanner) (k Kernel, err error) {
		return k, r.Scan(&k.BuildID, &k.Release, &k.KernelID, &k.Levels, &k.Newest)
	}, `SELECT build_id, MAX(kernel_release), MAX(kernel_id), COUNT(*), MAX(level)
FROM levels GROUP BY build_id ORDER BY MAX(kernel_release), build_id`)
}
