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
