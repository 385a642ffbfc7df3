// Package prune deletes expired sessions in batches for the Manager's
// background loop and for sessionctl prune alike: each batch is bounded by
// a timeout of its own, never the whole run, so a large backlog is deleted
// to the end however long that takes, and a batch that takes too long is a
// slow database, answered with smaller batches, not an outage. Between
// batches a run rests as long as the last batch took, so that it takes at
// most half of the database's time from the requests it serves meanwhile.
package prune

import (
	"context"
	"fmt"
	"time"
)

// Batch sizes: a run starts at First and halves a batch that takes longer
// than its timeout, down to Smallest.
const (
	First    = 1000
	Smallest = 10
)

// Report is what a run tells as it goes: rows deleted so far, and whether
// the last batch was slow (and so the next one smaller).
type Report struct {
	Deleted int
	Batch   int
	Slow    bool
}

// Run calls batch with a limit until it deletes fewer rows than the limit,
// each call under a context bounded by timeout, and returns how many rows
// were deleted. Each call's result goes to report, if not nil. A call whose
// own deadline passes halves the limit; one at Smallest that still does is
// a SlowError. Any other error ends the run, as does ctx's end.
//
// Before each call after the first, Run waits as long as the previous call
// took: a large backlog takes longer to delete (a million rows on a
// 2-CPU machine under load: about 190 s against 60 s without the rest),
// and the requests running beside it keep their latency (their p99 1.5 to
// 1.7 times the quiet one, against up to 2.4 times; bench/README.md).
func Run(ctx context.Context, timeout time.Duration, batch func(ctx context.Context, limit int) (int, error), report func(Report)) (int, error) {
	limit, total := First, 0
	var rest time.Duration
	for {
		if rest > 0 {
			pause := time.NewTimer(rest)
			select {
			case <-ctx.Done():
				pause.Stop()
				return total, ctx.Err()
			case <-pause.C:
			}
		}
		started := time.Now()
		batchCtx, cancel := context.WithTimeout(ctx, timeout)
		n, err := batch(batchCtx, limit)
		slow := err != nil && batchCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil
		cancel()
		rest = time.Since(started)
		total += n
		switch {
		case slow && limit > Smallest:
			limit = max(limit/2, Smallest)
			if report != nil {
				report(Report{Deleted: total, Batch: limit, Slow: true})
			}
			continue
		case slow:
			return total, &SlowError{Batch: limit, Timeout: timeout}
		case err != nil:
			return total, err
		}
		if report != nil {
			report(Report{Deleted: total, Batch: limit})
		}
		if n < limit {
			return total, nil
		}
	}
}

// SlowError is a run stopped because even the smallest batch took longer
// than its timeout: the database answers, but slowly.
type SlowError struct {
	Batch   int
	Timeout time.Duration
}

func (e *SlowError) Error() string {
	return fmt.Sprintf("deleting even %d expired sessions takes longer than %s: the database answers but is slow (look for long transactions holding locks in pg_stat_activity, or prune when the load is lower)", e.Batch, e.Timeout)
}
