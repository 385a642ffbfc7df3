package prune

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRunHalvesSlowBatches: batches that outlast their timeout get smaller
// until they fit, and the run deletes everything; a batch that never fits
// ends the run with a SlowError; any other error ends it as it is.
func TestRunHalvesSlowBatches(t *testing.T) {
	t.Parallel()
	backlog := 5000
	var limits []int
	deleted, err := Run(t.Context(), time.Second, func(ctx context.Context, limit int) (int, error) {
		limits = append(limits, limit)
		if limit > 250 {
			<-ctx.Done() // as a batch too large for the timeout would
			return 0, ctx.Err()
		}
		n := min(limit, backlog)
		backlog -= n
		return n, nil
	}, nil)
	if err != nil || deleted != 5000 || backlog != 0 {
		t.Fatalf("Run = %d, %v with %d left; want all 5000 deleted", deleted, err, backlog)
	}
	if limits[0] != First || limits[1] != First/2 || limits[2] != First/4 {
		t.Errorf("limits %v; want %d halved until it fits", limits[:3], First)
	}

	_, err = Run(t.Context(), 10*time.Millisecond, func(ctx context.Context, limit int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, nil)
	if slow, ok := errors.AsType[*SlowError](err); !ok || slow.Batch != Smallest {
		t.Errorf("Run of batches that never fit = %v; want a SlowError at the smallest batch", err)
	}

	boom := errors.New("boom")
	if _, err := Run(t.Context(), time.Second, func(context.Context, int) (int, error) { return 0, boom }, nil); !errors.Is(err, boom) {
		t.Errorf("Run = %v; want the batch's own error", err)
	}
}

// TestRunRestsBetweenBatches: after each batch the run waits at least as
// long as the batch took, so that pruning a large backlog leaves the
// database half of its time for requests; the end of ctx ends the wait.
func TestRunRestsBetweenBatches(t *testing.T) {
	t.Parallel()
	const work = 30 * time.Millisecond
	var starts, ends []time.Time
	backlog := 3 * First
	deleted, err := Run(t.Context(), time.Second, func(ctx context.Context, limit int) (int, error) {
		starts = append(starts, time.Now())
		time.Sleep(work)
		n := min(limit, backlog)
		backlog -= n
		ends = append(ends, time.Now())
		return n, nil
	}, nil)
	if err != nil || deleted != 3*First {
		t.Fatalf("Run = %d, %v; want all %d deleted", deleted, err, 3*First)
	}
	if len(starts) != 4 {
		t.Fatalf("%d batches; want 4 (three full, one empty)", len(starts))
	}
	for i := 1; i < len(starts); i++ {
		took := ends[i-1].Sub(starts[i-1])
		if gap := starts[i].Sub(ends[i-1]); gap < took {
			t.Errorf("batch %d started %v after batch %d ended, which took %v; want a rest at least as long", i+1, gap, i, took)
		}
	}

	// A context that ends during a rest ends the run there: no batch runs
	// on a cancelled context.
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	_, err = Run(ctx, time.Second, func(context.Context, int) (int, error) {
		calls++
		time.Sleep(300 * time.Millisecond) // so the rest after it is as long
		return First, nil
	}, func(Report) { cancel() })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("Run cancelled while resting = %v after %d batches; want context.Canceled after 1", err, calls)
	}
}
