package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

func recentRecord1(loadedAt time.Time) *Record {
	return &Record{
		Values:   map[string]json.RawMessage{"n": json.RawMessage(`1`)},
		Expiry:   loadedAt.Add(time.Hour),
		LoadedAt: loadedAt,
	}
}

// backdate makes key's record written d ago.
func backdate(c *recentRecords, key string, d time.Duration) {
	e := c.entries[key]
	e.at = time.Now().Add(-d)
	c.entries[key] = e
}

// TestRecentRecordsTake: the copy take hands out is the caller's own, with
// LoadedAt moved forward by the time since the write; an expired session,
// an outdated record and an unknown key give nothing.
func TestRecentRecordsTake(t *testing.T) {
	var c recentRecords
	// As the database gives it: to the microsecond, which is what take
	// truncates the moved LoadedAt to.
	loaded := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	c.put("k", recentRecord1(loaded), 7, 10, false)
	backdate(&c, "k", time.Second)

	rec, version, ok := c.take("k")
	if !ok || version != 7 {
		t.Fatalf("take = %v, %d; want the record written as version 7", ok, version)
	}
	if moved := rec.LoadedAt.Sub(loaded); moved < time.Second || moved > 2*time.Second {
		t.Errorf("LoadedAt moved by %v; want the second since the write", moved)
	}
	rec.Values["n"] = json.RawMessage(`2`)
	if again, _, _ := c.take("k"); string(again.Values["n"]) != "1" {
		t.Errorf("a change to a taken copy reached the kept record: n = %s", again.Values["n"])
	}

	if _, _, ok := c.take("unknown"); ok {
		t.Error("take of an unknown key found a record")
	}
	// Written two seconds ago, a second before its deadline.
	expired := recentRecord1(loaded)
	expired.Expiry = loaded.Add(time.Second)
	c.put("expired", expired, 8, 10, false)
	backdate(&c, "expired", 2*time.Second)
	if _, _, ok := c.take("expired"); ok {
		t.Error("take handed out a session past its deadline")
	}
	if c.known("expired") {
		t.Error("an expired record is still kept")
	}
	c.put("old", recentRecord1(time.Now()), 9, 10, false)
	backdate(&c, "old", recentMaxAge+time.Second)
	if _, _, ok := c.take("old"); ok {
		t.Error("take handed out a record older than recentMaxAge")
	}
}

// TestRecentRecordsBackOff: after each miss, twice as many takes as after
// the one before go to the locked read, up to recentMaxSkips; a hit starts
// again at none.
func TestRecentRecordsBackOff(t *testing.T) {
	var c recentRecords
	now := time.Now()
	c.put("k", recentRecord1(now), 1, 10, false)
	skipsAfter := func(miss int) int {
		c.missed("k")
		if _, _, ok := c.take("k"); ok {
			t.Fatalf("after miss %d: take handed out the record found outdated", miss)
		}
		// The locked read writes the row again, and the store keeps that.
		c.put("k", recentRecord1(now), uint32(miss+1), 10, false)
		skips := 1 // the take above
		for {
			if _, _, ok := c.take("k"); ok {
				return skips
			}
			skips++
			if skips > 1000 {
				t.Fatal("take never hands the record out again")
			}
		}
	}
	for miss, want := range []int{2, 4, 8, 16, 32, 64, 64, 64} {
		if got := skipsAfter(miss + 1); got != want {
			t.Errorf("miss %d: %d takes skipped; want %d", miss+1, got, want)
		}
	}
	c.put("k", recentRecord1(now), 100, 10, true)
	if got := skipsAfter(100); got != 2 {
		t.Errorf("a miss after a hit: %d takes skipped; want 2", got)
	}
}

// TestRecentRecordsBounds: the store keeps at most recentMaxEntries
// records and recentMaxBytes of values, and none of a very large session.
func TestRecentRecordsBounds(t *testing.T) {
	var c recentRecords
	now := time.Now()
	for i := range recentMaxEntries + 10 {
		c.put(fmt.Sprint(i), recentRecord1(now), 1, 10, false)
	}
	if n := len(c.entries); n != recentMaxEntries {
		t.Errorf("%d records kept; want %d", n, recentMaxEntries)
	}
	large := recentMaxBytes / 100
	for i := range 200 {
		c.put(fmt.Sprint("large", i), recentRecord1(now), 1, large, false)
	}
	total := 0
	for _, e := range c.entries {
		total += e.size
	}
	if total != c.bytes || c.bytes > recentMaxBytes {
		t.Errorf("%d bytes kept (%d counted); want at most %d", total, c.bytes, recentMaxBytes)
	}
	c.put("huge", recentRecord1(now), 1, recentMaxBytes/32, false)
	if c.known("huge") {
		t.Error("a session of an eighth of the room is kept")
	}
	c.drop("large199")
	if c.known("large199") {
		t.Error("drop left the record")
	}
}

// TestRecentRecordsHold: Modify calls on one key take turns; a call that
// waits gives up with its context.
func TestRecentRecordsHold(t *testing.T) {
	var c recentRecords
	release, err := c.hold(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.hold(t.Context(), "other")
	if err != nil {
		t.Fatalf("another key waited: %v", err)
	}
	other()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.hold(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hold of a held key = %v; want the context's deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		release, err := c.hold(t.Context(), "k")
		if err == nil {
			release()
		}
		got <- err
	}()
	release()
	if err := <-got; err != nil {
		t.Fatalf("hold after the release: %v", err)
	}
	if len(c.busy) != 0 {
		t.Errorf("%d keys still held", len(c.busy))
	}
}
