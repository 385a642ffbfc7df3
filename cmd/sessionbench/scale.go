package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/prune"
)

// How the cost grows with the table (-seed N): both tables get N live and
// N expired sessions before any workload runs, each in one INSERT ...
// SELECT generate_series, as a table fills in production, not through
// HTTP. The workloads' own sessions come on top. With the read workload
// selected, the run then prunes the expired rows while the read load runs
// (pruneUnderLoad).

// seedTable fills table with live and expired sessions shaped like the
// library's: a 64-character key, a signed-in user, a browser's user agent
// and address. The expired ones ended between one hour and a day ago.
func seedTable(ctx context.Context, pool *pgxpool.Pool, table string, live, expired int) error {
	insert := func(n int, expiry string) error {
		_, err := pool.Exec(ctx, `INSERT INTO `+table+` (id, data, user_id, persistent, created_at, expires_at, last_seen, user_agent, ip, version)
SELECT md5('live' || g || random()) || md5(g::text || random()), '{"user":{"id":42,"name":"Ada"}}'::jsonb, 'user-' || (g % 100000),
  true, now() - interval '1 day', `+expiry+`, now() - interval '1 hour',
  'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0', '203.0.113.' || (g % 250), 1
FROM generate_series(1, $1) g`, n)
		return err
	}
	if err := insert(live, "now() + interval '13 days'"); err != nil {
		return fmt.Errorf("seeding %d live sessions into %s: %w", live, table, err)
	}
	if err := insert(expired, "now() - interval '1 hour' - (g % 82800) * interval '1 second'"); err != nil {
		return fmt.Errorf("seeding %d expired sessions into %s: %w", expired, table, err)
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
		return fmt.Errorf("vacuuming %s after seeding: %w", table, err)
	}
	return nil
}

// noPruner hides the store's Pruner from the Manager, so that the seeded
// expired rows stay until pruneUnderLoad deletes them.
type noPruner struct{ session.Store }

// pruneResult is what pruning the seeded expired rows under load showed.
type pruneResult struct {
	Rows     int           `json:"rows"`
	Duration time.Duration `json:"duration_ns"`
	// Batches slowed down to fit the store timeout; 0 means none was
	// slow.
	SlowBatches int `json:"slow_batches"`
	// QuietP99 is the library's read p99 just before, DuringP99 while
	// pruning; Reads how many reads were measured during.
	QuietP99  time.Duration `json:"quiet_p99_ns"`
	DuringP99 time.Duration `json:"during_p99_ns"`
	Reads     int           `json:"reads_during"`
}

// pruneUnderLoad measures the library's read p99 under the read load for
// quiet, then prunes the table the way the Manager and sessionctl prune
// do (package prune: batches bounded by timeout, halved when slow) while
// the same load goes on, and reports both p99s and how long pruning took.
func (b *bench) pruneUnderLoad(ctx context.Context, store session.Pruner, quiet, timeout time.Duration) (*pruneResult, error) {
	srv := b.library
	cookies, err := b.sessionsOn(ctx, srv)
	if err != nil {
		return nil, err
	}
	workers := newWorkers(b.opts.workers, cookies, nil, 99)
	defer func() {
		for _, w := range workers {
			w.closeIdle()
		}
	}()
	p99 := func() (time.Duration, int) {
		var all []time.Duration
		for _, w := range workers {
			all = append(all, w.latencies...)
			w.latencies = w.latencies[:0]
		}
		if len(all) == 0 {
			return 0, 0
		}
		slices.Sort(all)
		return all[len(all)*99/100], len(all)
	}
	fmt.Fprintf(b.progress, "%-10s reads for %v, then pruning the expired rows under the same load\n", "prune", quiet)
	phase(ctx, srv, workers, "read", min(quiet/5, time.Second), false)
	phase(ctx, srv, workers, "read", quiet, true)
	res := &pruneResult{}
	res.QuietP99, _ = p99()

	var wg sync.WaitGroup
	done := make(chan struct{})
	var pruneErr error
	start := time.Now()
	wg.Go(func() {
		defer close(done)
		res.Rows, pruneErr = prune.Run(ctx, timeout, func(ctx context.Context, limit int) (int, error) {
			pruned, err := store.Prune(ctx, limit)
			return len(pruned), err
		}, func(r prune.Report) {
			if r.Slow {
				res.SlowBatches++
			}
		})
		res.Duration = time.Since(start)
	})
	for running := true; running && ctx.Err() == nil; {
		phase(ctx, srv, workers, "read", 500*time.Millisecond, true)
		select {
		case <-done:
			running = false
		default:
		}
	}
	wg.Wait()
	if pruneErr != nil {
		return nil, fmt.Errorf("pruning under load: %w (%d rows pruned)", pruneErr, res.Rows)
	}
	res.DuringP99, res.Reads = p99()
	for _, w := range workers {
		if w.errors > 0 {
			return nil, fmt.Errorf("reads while pruning: %d errors, the last: %s", w.errors, w.lastError)
		}
	}
	return res, nil
}
