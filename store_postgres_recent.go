package session

import (
	"context"
	"sync"
	"time"
)

// This file lets the PostgreSQL store's Modify write in one round trip when
// it can. The store keeps the records its own Modify calls wrote last, each
// with the row version it left (the xmin system column, which every write
// of the row changes). The next Modify of the same session runs fn on a
// copy of that record and sends one UPDATE that applies only if the row is
// still that version. When another writer got there first (another
// instance, or an Apply, renewal or deletion), the UPDATE matches nothing:
// Modify then reads the row under lock and runs fn again on it, as it does
// for a session it has no record of. Either way fn's result is stored only
// on the row fn saw, so Update[T] stays exact.
//
// Modify calls of this process on a session it keeps a record of take
// turns (hold), so that they do not overturn each other's versions;
// sessions of other processes are what the version check is for. A
// session that other processes also change would make every attempt a
// wasted round trip before the locked read, so each miss doubles the
// number of Modify calls on that session that skip the attempt, up to
// recentMaxSkips; a hit starts again at none.

// Bounds of what the store keeps: entries, their encoded values in bytes,
// and how long an entry is used after the write that left it. Beyond
// them an entry is dropped, which costs the next Modify of its session the
// two round trips of the locked read.
const (
	recentMaxEntries = 4096
	recentMaxBytes   = 8 << 20
	recentMaxAge     = 30 * time.Second
	recentMaxSkips   = 64
)

// recentRecords is what a PostgreSQL store keeps of its latest writes.
type recentRecords struct {
	mu      sync.Mutex
	entries map[string]recentRecord
	bytes   int
	// busy holds, for each key a Modify of this process works on, a
	// channel closed when it is done.
	busy map[string]chan struct{}
}

type recentRecord struct {
	rec     *Record // the store's own copy, LoadedAt the database's clock
	version uint32  // the row's xmin after the write
	at      time.Time
	size    int
	// misses counts the attempts in a row that found the row changed;
	// skips is how many Modify calls still go straight to the locked read.
	misses, skips int
}

// known says whether the store keeps a record of key.
func (c *recentRecords) known(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[key]
	return ok
}

// hold waits until no other Modify of this process works on key, and
// returns the release that lets the next one in.
func (c *recentRecords) hold(ctx context.Context, key string) (release func(), err error) {
	for {
		c.mu.Lock()
		done, busy := c.busy[key]
		if !busy {
			if c.busy == nil {
				c.busy = map[string]chan struct{}{}
			}
			done = make(chan struct{})
			c.busy[key] = done
			c.mu.Unlock()
			return func() {
				c.mu.Lock()
				delete(c.busy, key)
				c.mu.Unlock()
				close(done)
			}, nil
		}
		c.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// take returns a copy of key's record for fn to change, with LoadedAt moved
// forward by the time passed since it was the database's clock, and the
// row version it was written as; false when there is none young enough or
// the session's deadline has passed.
func (c *recentRecords) take(key string) (*Record, uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, 0, false
	}
	if e.skips > 0 {
		e.skips--
		c.entries[key] = e
		return nil, 0, false
	}
	if e.version == 0 {
		return nil, 0, false // found outdated, not yet replaced
	}
	age := time.Since(e.at)
	now := e.rec.LoadedAt.Add(age).Truncate(time.Microsecond)
	if age > recentMaxAge || !now.Before(e.rec.deadline()) {
		c.remove(key, e)
		return nil, 0, false
	}
	rec := clone(e.rec)
	rec.LoadedAt = now
	return rec, e.version, true
}

// put keeps a copy of rec, written as version, as key's record; size is
// the length of its encoded values. hit says whether the write was an
// attempt on the record kept before, which resets the count of misses.
func (c *recentRecords) put(key string, rec *Record, version uint32, size int, hit bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.entries[key]
	if ok {
		c.remove(key, old)
	}
	if hit {
		old.misses, old.skips = 0, 0
	}
	if size > recentMaxBytes/64 {
		return // a session this large is rare: not worth its room
	}
	if c.entries == nil {
		c.entries = map[string]recentRecord{}
	}
	for k, e := range c.entries {
		if len(c.entries) < recentMaxEntries && c.bytes+size <= recentMaxBytes {
			break
		}
		c.remove(k, e) // map order: an arbitrary entry
	}
	c.entries[key] = recentRecord{rec: clone(rec), version: version, at: time.Now(), size: size, misses: old.misses, skips: old.skips}
	c.bytes += size
}

// missed records that an attempt on key's record found the row changed:
// the record is no longer current, and the next Modify calls on key skip
// the attempt, twice as many as after the previous miss.
func (c *recentRecords) missed(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return
	}
	e.misses++
	e.skips = min(1<<min(e.misses, 7), recentMaxSkips)
	e.version = 0 // never a row's version: a stale record is not used
	c.entries[key] = e
}

// drop forgets key's record, if any.
func (c *recentRecords) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		c.remove(key, e)
	}
}

func (c *recentRecords) remove(key string, e recentRecord) {
	delete(c.entries, key)
	c.bytes -= e.size
}
