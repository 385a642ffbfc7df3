package session

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smartscheduler/session/internal/redact"
	"github.com/smartscheduler/session/internal/rediskeys"
	"github.com/smartscheduler/session/internal/redisurl"
)

// RedisOptions configures NewRedisStore. The zero value is ready to use.
type RedisOptions struct {
	// Prefix starts the name of every key the store writes, so that
	// several apps or environments can share one Redis. It may not contain
	// braces, which Redis Cluster reads as a hash tag. The default value is
	// "session:".
	Prefix string
}

// redisStore is the Store NewRedisStore returns.
type redisStore struct {
	client redis.UniversalClient
	keys   rediskeys.Layout
	clock  serverClock
	// nextShard is where the next Prune starts, so that successive calls
	// walk every shard in turn.
	nextShard atomic.Int64
}

// Lifetimes of the store's short-lived keys, and Modify's patience.
const (
	// redisMarkerTTL is how long a renewed session's old key keeps
	// pointing to the new one: far longer than the two steps of a Rekey
	// take, even under StoreTimeout.
	redisMarkerTTL = time.Minute
	// redisTombstoneTTL is how long a key that DestroyUser found missing
	// stays unavailable to a Rekey that might be about to create it.
	redisTombstoneTTL = time.Minute
	// redisModifyAttempts bounds Modify's optimistic retries, each after a
	// short random pause; under StoreTimeout's default 5s a session would
	// need hundreds of writes a second to exhaust them.
	redisModifyAttempts = 100
)

// NewRedisStore returns a Store, also a UserIndex and a Pruner, that keeps
// sessions in Redis: a single server, a Sentinel-managed primary or a Redis
// Cluster, through any go-redis UniversalClient, here client, which stays
// the caller's: close it after the store's last use. New opens one itself
// from Config (USE_REDIS, REDIS_URL). It needs Redis 6.2 or later, and a
// server that evicts nothing (maxmemory-policy noeviction): every key the
// store writes has a TTL, so volatile-* policies evict sessions and user
// indexes as readily as allkeys-* ones (sessionctl check says so).
//
// A read is one HGETALL. Every change is one Lua script, run atomically on
// the node that holds the session: Apply merges a request's changes into
// the session as it is (two requests setting different keys both land; a
// session deleted meanwhile is never re-created); a change that writes no
// value only slides the idle expiry. Each session's key expires by itself
// at the session's deadline. Modify is a WATCH/MULTI transaction, retried
// when another writer changed the session first, so its fn may run more
// than once.
//
// Keys: a session is one hash in one of 1024 shards; the shard is the key's
// hash tag, so a session's hash and its shard's deadline set share a slot
// and change together. The deadline sets let Prune find expired entries
// without scanning the keyspace: a full pass is 1024 ZCOUNTs in 16 round
// trips, plus one small script per shard that holds expired entries, each
// removing at most what the batch has room for. A user's sessions are
// listed in a sorted set in the user's own slot, scored by their absolute
// expiry; ListUser, DestroyUser and TrimUser read it and then each session,
// pipelined, never scanning.
//
// What is eventually consistent: the user index, which lives in another
// slot than the sessions it lists. An entry may outlive its session (ended
// by expiry, logout or renewal); ListUser never reports such a session, and
// drops the entry, as do DestroyUser, TrimUser and Prune, and the index's
// own TTL, which ends it with its last absolute expiry. A session becomes
// listed under its user within the call that bound it (Insert, Apply,
// Rekey, Modify): it is indexed before the session is written and again
// after, so a RevokeUser that starts after that call returned finds it,
// and one that overlaps the call may not. DestroyUser deletes each session
// atomically, only if it still belongs to that user, but not all of them
// in one step.
//
// Rekey (renewal) cannot be one script in a Cluster, where the old and new
// keys are in different slots. Its first step, atomic on the old key's
// node, applies the change and turns the record into a marker that names
// the new key: from then on a concurrent Apply to the old key gets
// ErrNotFound (refused, not lost: the request starts a new session), and
// DestroyUser follows the marker to the new key. The second step creates
// the new key, unless DestroyUser left a tombstone there meanwhile (the
// session was revoked while it moved: Rekey returns ErrNotFound). If the
// second step fails, the marker is turned back into the session. The
// window: a process that dies between the two steps loses that one session
// (its marker expires after a minute), and its user signs in again.
//
// Errors: a connection refused or dropped, a timeout, a cluster failover in
// progress (CLUSTERDOWN, TRYAGAIN, MASTERDOWN, LOADING, READONLY, redirects
// that do not settle) and a server out of memory wrap ErrUnavailable, so
// the Manager answers 503 with Retry-After; go-redis reconnects and
// reloads the cluster's layout by itself, and service resumes with it. A
// record that does not decode is an error naming its key, never a panic.
// The client is the caller's: set ContextTimeoutEnabled in its options so
// that the request's deadline bounds every call (New does).
func NewRedisStore(client redis.UniversalClient, opts RedisOptions) (Store, error) {
	s, err := newRedisStore(client, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// newRedisStore is NewRedisStore for the package, which needs the store's
// own type.
func newRedisStore(client redis.UniversalClient, opts RedisOptions) (*redisStore, error) {
	if client == nil {
		return nil, errors.New("session: NewRedisStore: the client is nil")
	}
	keys, err := rediskeys.New(opts.Prefix)
	if err != nil {
		return nil, fmt.Errorf("session: RedisOptions.Prefix %q: %w", opts.Prefix, err)
	}
	return &redisStore{client: client, keys: keys}, nil
}

// openRedisStore connects to redisURL (a cluster when the URL or cluster
// says so) and checks that the server answers within timeout. Its errors
// name the servers and database but never the password; close closes the
// client it made.
func openRedisStore(ctx context.Context, redisURL string, cluster bool, timeout time.Duration) (*redisStore, func() error, error) {
	target, err := redisurl.Parse(redisURL, cluster)
	if err != nil {
		return nil, nil, fmt.Errorf("session: REDIS_URL %w", err)
	}
	client := target.NewClient()
	pingCtx, cancel := context.WithTimeout(ctx, timeout)
	err = client.Ping(pingCtx).Err()
	cancel()
	if err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("session: connect to %s within %v: check REDIS_URL and that the server is up: %w",
			target.Where, timeout, redact.WithText(redisurl.Redact(err.Error(), redisURL), classifyRedis(ctx, err)))
	}
	s, err := newRedisStore(client, RedisOptions{})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return s, client.Close, nil
}

// Load implements Store with one HGETALL. Redis deletes a session's key at
// its deadline by itself; Load also compares the deadline with the
// server's clock, as estimated from the last script that read it (see
// serverClock), to the microsecond.
func (s *redisStore) Load(ctx context.Context, key string) (*Record, error) {
	rk := s.keys.Record(key)
	var fields map[string]string
	now, fresh := s.clock.now()
	if fresh {
		var err error
		if fields, err = s.client.HGetAll(ctx, rk).Result(); err != nil {
			return nil, s.fail(ctx, "load", key, err)
		}
	} else {
		var hash *redis.MapStringStringCmd
		var clock *redis.TimeCmd
		if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			hash, clock = p.HGetAll(ctx, rk), p.Time(ctx)
			return nil
		}); err != nil {
			return nil, s.fail(ctx, "load", key, err)
		}
		fields, now = hash.Val(), clock.Val()
		s.clock.observe(now)
	}
	rec, err := decodeMap(fields)
	if err != nil {
		return nil, s.decodeError(key, err)
	}
	if rec == nil || !now.Before(rec.deadline()) {
		return nil, ErrNotFound
	}
	rec.LoadedAt = now
	return rec, nil
}

// serverClock estimates the Redis server's clock from this process's: the
// offset between them as the last script that read TIME found it. Every
// write reads it, so a process that writes keeps it fresh; one that only
// reads pipelines a TIME with a Load every redisClockRefresh.
type serverClock struct {
	mu       sync.Mutex
	offset   time.Duration
	observed time.Time // this process's clock then, zero before the first
}

// redisClockRefresh is how old an estimate of the server's clock may get.
const redisClockRefresh = 30 * time.Second

func (c *serverClock) now() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	local := time.Now()
	return local.Add(c.offset).Truncate(time.Microsecond), !c.observed.IsZero() && local.Sub(c.observed) < redisClockRefresh
}

func (c *serverClock) observe(server time.Time) {
	local := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset, c.observed = server.Sub(local), local
}

// Insert implements Store. A session with a user is indexed before it is
// written and again after (see NewRedisStore on the user index).
func (s *redisStore) Insert(ctx context.Context, key string, rec *Record) error {
	if rec.UserID != "" {
		if err := s.indexUser(ctx, rec.UserID, []indexEntry{{rec.Expiry.UnixMicro(), key}}, nil); err != nil {
			return s.fail(ctx, "insert", key, err)
		}
	}
	d := rec.deadline().UnixMicro()
	args := append([]any{d, rediskeys.Member(key, rec.UserID), (d + 999) / 1000}, recordFields(rec)...)
	n, err := redisInsert.Run(ctx, s.client, []string{s.keys.Record(key), s.keys.DeadlinesOf(key)}, args...).Int()
	if err != nil {
		return s.fail(ctx, "insert", key, err)
	}
	if n != 1 {
		return ErrConflict
	}
	if rec.UserID != "" {
		if err := s.indexUser(ctx, rec.UserID, []indexEntry{{rec.Expiry.UnixMicro(), key}}, nil); err != nil {
			return s.fail(ctx, "insert", key, err)
		}
	}
	return nil
}

// Apply implements Store in one script. A change of user or of absolute
// expiry also updates the user indexes, before and after the script.
func (s *redisStore) Apply(ctx context.Context, key string, change Change) (*Record, error) {
	bound := change.UserID != nil && *change.UserID != ""
	if bound {
		if err := s.indexUser(ctx, *change.UserID, []indexEntry{{provisional, key}}, nil); err != nil {
			return nil, s.fail(ctx, "apply", key, err)
		}
	}
	script, args := redisApply, []any(nil)
	if onlySets(change) {
		script, args = redisSet, make([]any, 0, 4+2*len(change.Set))
		args = append(args, key, change.IdleTimeout.Microseconds(), change.TouchInterval.Microseconds(), change.MaxSize)
		for k, v := range change.Set {
			args = append(args, k, []byte(v))
		}
	} else {
		args = redisChangeArgs([]any{key}, change, change.IdleTimeout)
	}
	res, err := script.Run(ctx, s.client, []string{s.keys.Record(key), s.keys.DeadlinesOf(key)}, args...).Slice()
	if err != nil {
		return nil, s.fail(ctx, "apply", key, err)
	}
	if err := s.changeReply("apply", key, res); err != nil {
		if bound && err == ErrNotFound {
			s.unindexQuietly(ctx, *change.UserID, key)
		}
		return nil, err
	}
	rec, err := decodeMeta(res[2])
	if err != nil {
		return nil, s.decodeError(key, err)
	}
	if rec.LoadedAt, err = parseMicros(res[1]); err != nil {
		return nil, s.decodeError(key, err)
	}
	s.clock.observe(rec.LoadedAt)
	before, _ := res[3].(string)
	if change.UserID != nil || !change.Expiry.IsZero() {
		if err := s.reindex(ctx, key, before, rec); err != nil {
			return nil, s.fail(ctx, "apply", key, err)
		}
	}
	return rec, nil
}

// onlySets reports whether change only sets values, if any: what
// redisSet does.
func onlySets(c Change) bool {
	return !c.Clear && len(c.Delete) == 0 && c.UserID == nil && c.Persistent == nil && c.Expiry.IsZero() &&
		c.SessionIdleTimeout == nil
}

// reindex lists the session under key in its user's index with its
// absolute expiry, and takes it out of the index of the user it had
// before, if another.
func (s *redisStore) reindex(ctx context.Context, key, before string, rec *Record) error {
	if rec.UserID != "" {
		if err := s.indexUser(ctx, rec.UserID, []indexEntry{{rec.Expiry.UnixMicro(), key}}, nil); err != nil {
			return err
		}
	}
	if before != "" && before != rec.UserID {
		return s.indexUser(ctx, before, nil, []string{key})
	}
	return nil
}

// Rekey implements Store in two steps, taking the record from the old key
// and creating the new one (see NewRedisStore for the window between them).
func (s *redisStore) Rekey(ctx context.Context, oldKey, newKey string, change Change, fresh *Record) (*Record, error) {
	args := redisChangeArgs([]any{oldKey, newKey, redisMarkerTTL.Milliseconds()}, change, 0)
	oldRecord := []string{s.keys.Record(oldKey), s.keys.DeadlinesOf(oldKey)}
	res, err := redisTake.Run(ctx, s.client, oldRecord, args...).Slice()
	if err != nil {
		return nil, s.fail(ctx, "rekey", oldKey, err)
	}
	if err := s.changeReply("rekey", oldKey, res); err != nil {
		return nil, err
	}
	// The reply is the marker: the record with "m" naming newKey.
	flat, _ := res[2].([]any)
	var hash []any
	for i := 0; i+1 < len(flat); i += 2 {
		if flat[i] != "m" {
			hash = append(hash, flat[i], flat[i+1])
		}
	}
	rec, err := decodeHash(hash)
	if err == nil && rec == nil {
		err = errors.New("the taken record is empty")
	}
	if err != nil {
		return nil, s.decodeError(oldKey, err)
	}
	if rec.LoadedAt, err = parseMicros(res[1]); err != nil {
		return nil, s.decodeError(oldKey, err)
	}
	before, _ := res[3].(string)
	rec.renewFrom(fresh)
	if err := s.create(ctx, oldKey, newKey, rec); err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.restore(ctx, oldKey, newKey)
		}
		return nil, err
	}
	// The session has moved: from here on a failure must not fail the
	// renewal. create indexed the new key already; this second entry only
	// restores one that a concurrent read of the index dropped while the
	// key did not exist yet. The old key's entry, if left, is one that
	// every read of the index drops.
	if rec.UserID != "" {
		_ = s.indexUser(ctx, rec.UserID, []indexEntry{{rec.Expiry.UnixMicro(), newKey}}, nil)
	}
	if before != "" {
		s.unindexQuietly(ctx, before, oldKey)
	}
	return rec, nil
}

// create is Rekey's second step: it stores rec under newKey, indexed under
// its user first.
func (s *redisStore) create(ctx context.Context, oldKey, newKey string, rec *Record) error {
	if rec.UserID != "" {
		if err := s.indexUser(ctx, rec.UserID, []indexEntry{{rec.Expiry.UnixMicro(), newKey}}, nil); err != nil {
			return s.fail(ctx, "rekey", newKey, err)
		}
	}
	args := append([]any{rec.deadline().UnixMicro(), rediskeys.Member(newKey, rec.UserID), rec.Created.UnixMicro(), rec.LastSeen.UnixMicro()}, recordFields(rec)...)
	n, err := redisCreate.Run(ctx, s.client, []string{s.keys.Record(newKey), s.keys.DeadlinesOf(newKey)}, args...).Int()
	switch {
	case err != nil:
		return s.fail(ctx, "rekey", newKey, err)
	case n == 0:
		return ErrConflict
	case n == -2:
		// Revoked while it moved: it stays revoked.
		if rec.UserID != "" {
			s.unindexQuietly(ctx, rec.UserID, newKey)
		}
		return ErrNotFound
	}
	return nil
}

// restore turns the old key's marker back into the session after the new
// key could not be created, so that a failed renewal keeps the session.
// It gets a moment of its own: the request's deadline may be what failed.
func (s *redisStore) restore(ctx context.Context, oldKey, newKey string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	// Best effort: if this fails too, the marker expires and the session
	// is lost, which NewRedisStore documents.
	_ = redisRestore.Run(ctx, s.client, []string{s.keys.Record(oldKey), s.keys.DeadlinesOf(oldKey)}, oldKey, newKey).Err()
}

// Modify implements Store with WATCH/MULTI on the session's hash: it reads
// the session, runs fn, and writes the result only if nobody changed the
// session meanwhile; otherwise it starts again, up to
// redisModifyAttempts times.
func (s *redisStore) Modify(ctx context.Context, key string, fn func(*Record) error) (*Record, error) {
	rk, dk := s.keys.Record(key), s.keys.DeadlinesOf(key)
	var out *Record
	var fnErr error
	for attempt := 1; ; attempt++ {
		out, fnErr = nil, nil
		err := s.client.Watch(ctx, func(tx *redis.Tx) error {
			var hash *redis.MapStringStringCmd
			var clock *redis.TimeCmd
			if _, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
				hash, clock = p.HGetAll(ctx, rk), p.Time(ctx)
				return nil
			}); err != nil {
				return err
			}
			rec, err := decodeMap(hash.Val())
			if err != nil {
				return s.decodeError(key, err)
			}
			now := clock.Val().Truncate(time.Microsecond)
			if rec == nil || !now.Before(rec.deadline()) {
				return ErrNotFound
			}
			rec.LoadedAt = now
			before := *rec
			if err := fn(rec); err != nil {
				fnErr = err
				return nil
			}
			rec.LastSeen = now
			userMoved := rec.UserID != before.UserID
			if rec.UserID != "" && (userMoved || !rec.Expiry.Equal(before.Expiry)) {
				if err := s.indexUser(ctx, rec.UserID, []indexEntry{{rec.Expiry.UnixMicro(), key}}, nil); err != nil {
					return err
				}
			}
			d := rec.deadline()
			if _, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Del(ctx, rk)
				p.HSet(ctx, rk, recordFields(rec)...)
				p.PExpireAt(ctx, rk, d.Add(time.Millisecond-1).Truncate(time.Millisecond))
				if userMoved {
					p.ZRem(ctx, dk, rediskeys.Member(key, before.UserID))
				}
				p.ZAdd(ctx, dk, redis.Z{Score: float64(d.UnixMicro()), Member: rediskeys.Member(key, rec.UserID)})
				return nil
			}); err != nil {
				return err
			}
			if userMoved && before.UserID != "" {
				s.unindexQuietly(ctx, before.UserID, key)
			}
			out = rec
			return nil
		}, rk)
		switch {
		case fnErr != nil:
			return nil, fnErr
		case err == nil:
			return clone(out), nil
		case errors.Is(err, redis.TxFailedErr) && attempt < redisModifyAttempts:
			// Someone wrote first: wait a moment, more after each loss,
			// so that contenders spread out.
			pause := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))
			select {
			case <-ctx.Done():
				return nil, s.fail(ctx, "update", key, ctx.Err())
			case <-time.After(pause):
			}
		case errors.Is(err, redis.TxFailedErr):
			return nil, fmt.Errorf("session: redis update of %s: gave up after %d attempts, each overtaken by another write to the session", key, attempt)
		default:
			return nil, s.fail(ctx, "update", key, err)
		}
	}
}

// Destroy implements Store in one script, then drops the session from its
// user's index.
func (s *redisStore) Destroy(ctx context.Context, key string) (*Info, error) {
	res, err := redisDestroy.Run(ctx, s.client, []string{s.keys.Record(key), s.keys.DeadlinesOf(key)}, key).Slice()
	if err != nil {
		return nil, s.fail(ctx, "delete", key, err)
	}
	if replyStatus(res) != 1 || len(res) != 2 {
		return nil, nil
	}
	rec, err := decodeMeta(res[1])
	if err != nil {
		return nil, s.decodeError(key, err)
	}
	info := rec.info(key)
	if rec.UserID != "" {
		s.unindexQuietly(ctx, rec.UserID, key)
	}
	return &info, nil
}

// ListUser implements UserIndex: one script on the user's index, then one
// read per session, pipelined. Entries whose session is gone or belongs to
// another user are dropped from the index.
func (s *redisStore) ListUser(ctx context.Context, userID string) ([]Info, error) {
	if userID == "" {
		return nil, nil
	}
	infos, err := s.userSessions(ctx, userID)
	if err != nil {
		return nil, s.fail(ctx, "list user", userID, err)
	}
	slices.SortFunc(infos, func(a, b Info) int {
		return cmp.Or(b.Created.Compare(a.Created), strings.Compare(a.Key, b.Key))
	})
	return infos, nil
}

// userSessions returns the live sessions of userID, cleaning the index of
// the entries of any other.
func (s *redisStore) userSessions(ctx context.Context, userID string) ([]Info, error) {
	now, keys, err := s.indexRead(ctx, userID)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	cmds := make([]*redis.SliceCmd, len(keys))
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range keys {
			cmds[i] = p.HMGet(ctx, s.keys.Record(key), "u", "p", "c", "e", "it", "ie", "ls", "ua", "ip", "m")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var infos []Info
	var stale []string
	for i, key := range keys {
		rec, err := decodeMeta(cmds[i].Val())
		if err != nil {
			return nil, s.decodeError(key, err)
		}
		if rec == nil || rec.UserID != userID || !now.Before(rec.deadline()) {
			stale = append(stale, key)
			continue
		}
		infos = append(infos, rec.info(key))
	}
	if len(stale) > 0 {
		if err := s.indexUser(ctx, userID, nil, stale); err != nil {
			return nil, err
		}
	}
	return infos, nil
}

// DestroyUser implements UserIndex: each session listed under userID is
// deleted, in one script on its own node, only if it still belongs to
// userID; a session a Rekey is moving is followed to its new key. It is
// not one atomic step across sessions (see NewRedisStore).
func (s *redisStore) DestroyUser(ctx context.Context, userID, keep string) ([]Info, error) {
	if userID == "" {
		return nil, nil
	}
	_, keys, err := s.indexRead(ctx, userID)
	if err != nil {
		return nil, s.fail(ctx, "delete user", userID, err)
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == keep })
	deleted, err := s.destroyOwned(ctx, userID, keys, keep)
	if err != nil {
		return deleted, s.fail(ctx, "delete user", userID, err)
	}
	return deleted, nil
}

// destroyOwned deletes the sessions under keys that belong to userID,
// following moved sessions, and drops keys from the user's index.
func (s *redisStore) destroyOwned(ctx context.Context, userID string, keys []string, keep string) ([]Info, error) {
	var deleted []Info
	done := keys
	// A session moves at most once per Rekey; a few rounds follow the
	// renewals that race this call.
	for round := 0; len(keys) > 0 && round < 4; round++ {
		calls := make([]evalCall, len(keys))
		for i, key := range keys {
			calls[i] = evalCall{keys: []string{s.keys.Record(key), s.keys.DeadlinesOf(key)}, args: []any{key, userID, redisTombstoneTTL.Milliseconds()}}
		}
		results, err := s.evalAll(ctx, redisDestroyOwned, calls)
		if err != nil {
			return deleted, err
		}
		var moved []string
		for i, res := range results {
			switch replyStatus(res) {
			case 1:
				if len(res) != 2 {
					return deleted, s.malformed("delete user", keys[i])
				}
				rec, err := decodeMeta(res[1])
				if err != nil {
					return deleted, s.decodeError(keys[i], err)
				}
				deleted = append(deleted, rec.info(keys[i]))
			case 2:
				if next, _ := res[1].(string); next != "" && next != keep {
					moved = append(moved, next)
				}
			}
		}
		keys = moved
		done = append(done, moved...)
	}
	return deleted, s.indexUser(ctx, userID, nil, done)
}

// TrimUser implements UserIndex: it lists the user's live sessions, keeps
// the max most recently seen and deletes the others, each only if it still
// belongs to the user. Concurrent trims each delete what they see beyond
// the limit, so at most max remain once they all return.
func (s *redisStore) TrimUser(ctx context.Context, userID string, max int) ([]Info, error) {
	if userID == "" {
		return nil, nil
	}
	infos, err := s.userSessions(ctx, userID)
	if err != nil {
		return nil, s.fail(ctx, "trim user", userID, err)
	}
	if max < 0 {
		max = 0
	}
	if len(infos) <= max {
		return nil, nil
	}
	slices.SortFunc(infos, byRecency)
	var keys []string
	for _, info := range infos[max:] {
		keys = append(keys, info.Key)
	}
	deleted, err := s.destroyOwned(ctx, userID, keys, "")
	if err != nil {
		return deleted, s.fail(ctx, "trim user", userID, err)
	}
	return deleted, nil
}

// Prune implements Pruner. Redis expires sessions by itself; Prune removes
// the entries of expired sessions from the shards' deadline sets (with the
// record, when Redis has not yet expired it) and from the user indexes. It
// walks the shards from where the previous call stopped, 64 per round
// trip: it counts their expired entries (ZCOUNT), then runs one small
// script on each shard that has some, until it has limit entries or has
// seen every shard. A full pass costs 1024 ZCOUNTs in 16 round trips,
// however many sessions there are. For a record Redis had already expired
// it reports only Key and UserID. Several processes may prune at once:
// each entry is reported by one.
func (s *redisStore) Prune(ctx context.Context, limit int) ([]Info, error) {
	const perRoundTrip = 64
	var pruned []Info
	first := int(s.nextShard.Load())
	for seen := 0; seen < rediskeys.Shards && len(pruned) < limit; {
		n := min(perRoundTrip, rediskeys.Shards-seen)
		shard := func(i int) int { return (first + seen + i) % rediskeys.Shards }
		counts := make([]*redis.IntCmd, n)
		now := strconv.FormatInt(time.Now().UnixMicro(), 10)
		if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range counts {
				counts[i] = p.ZCount(ctx, s.keys.Deadlines(shard(i)), "-inf", now)
			}
			return nil
		}); err != nil {
			return pruned, s.fail(ctx, "prune", "", err)
		}
		// Give each shard with expired entries its share of what is left
		// of limit, in order; the walk resumes at the first shard that did
		// not get all it holds.
		var calls []evalCall
		budget, handled := limit-len(pruned), n
		for i, count := range counts {
			if count.Val() == 0 {
				continue
			}
			if budget == 0 {
				handled = i
				break
			}
			take := min(int(count.Val()), budget)
			budget -= take
			calls = append(calls, evalCall{keys: []string{s.keys.Deadlines(shard(i))}, args: []any{s.keys.RecordPrefix(shard(i)), take}})
			if take < int(count.Val()) {
				handled = i
				break
			}
		}
		results, err := s.evalAll(ctx, redisPruneShard, calls)
		if err != nil {
			return pruned, s.fail(ctx, "prune", "", err)
		}
		before := len(pruned)
		for _, res := range results {
			for j := 0; j+1 < len(res); j += 2 {
				member, _ := res[j].(string)
				key, user, ok := rediskeys.ParseMember(member)
				if !ok {
					continue
				}
				info := Info{Key: key, UserID: user}
				if rec, err := decodeMeta(res[j+1]); err == nil && rec != nil {
					info = rec.info(key)
				}
				pruned = append(pruned, info)
			}
		}
		if handled == 0 && len(pruned) == before {
			// The shard's clock and this one's disagree on what expired:
			// move on rather than count the same entries again.
			handled = 1
		}
		seen += handled
		s.nextShard.Store(int64((first + seen) % rediskeys.Shards))
	}
	byUser := map[string][]string{}
	for _, info := range pruned {
		if info.UserID != "" {
			byUser[info.UserID] = append(byUser[info.UserID], info.Key)
		}
	}
	for user, keys := range byUser {
		if err := s.indexUser(ctx, user, nil, keys); err != nil {
			return pruned, s.fail(ctx, "prune", user, err)
		}
	}
	return pruned, nil
}

// provisional is the score of a user index entry whose absolute expiry is
// not known yet: it keeps the entry until the call that added it corrects
// it, or a read finds the session is not the user's.
const provisional = -1

// indexEntry is a session to list in a user index, with its absolute
// expiry in microseconds, or provisional.
type indexEntry struct {
	expiry int64
	key    string
}

// indexUser adds entries to userID's index and removes keys from it.
func (s *redisStore) indexUser(ctx context.Context, userID string, add []indexEntry, remove []string) error {
	_, _, err := s.userIndex(ctx, userID, add, remove)
	return err
}

// indexRead returns the server's clock and the keys listed under userID.
func (s *redisStore) indexRead(ctx context.Context, userID string) (time.Time, []string, error) {
	return s.userIndex(ctx, userID, nil, nil)
}

func (s *redisStore) userIndex(ctx context.Context, userID string, add []indexEntry, remove []string) (time.Time, []string, error) {
	args := make([]any, 0, 1+2*len(add)+len(remove))
	args = append(args, len(add))
	for _, e := range add {
		score := "+inf"
		if e.expiry != provisional {
			score = strconv.FormatInt(e.expiry, 10)
		}
		args = append(args, score, e.key)
	}
	for _, key := range remove {
		args = append(args, key)
	}
	res, err := redisUserIndex.Run(ctx, s.client, []string{s.keys.User(userID)}, args...).Slice()
	if err != nil {
		return time.Time{}, nil, err
	}
	if len(res) != 2 {
		return time.Time{}, nil, fmt.Errorf("user index of %q: unexpected reply", userID)
	}
	now, err := parseMicros(res[0])
	if err != nil {
		return time.Time{}, nil, err
	}
	list, _ := res[1].([]any)
	keys := make([]string, 0, len(list))
	for _, k := range list {
		if key, ok := k.(string); ok {
			keys = append(keys, key)
		}
	}
	return now, keys, nil
}

// unindexQuietly drops key from userID's index, ignoring a failure: the
// entry is then one that every read of the index drops.
func (s *redisStore) unindexQuietly(ctx context.Context, userID, key string) {
	_ = s.indexUser(ctx, userID, nil, []string{key})
}

// evalCall is one run of a script in evalAll.
type evalCall struct {
	keys []string
	args []any
}

// evalAll runs calls of one script in a pipeline, which go-redis splits by
// node in a Cluster, and returns each result as a slice. A call whose node
// did not know the script (NOSCRIPT after a restart) runs again through
// Script.Run, which loads it.
func (s *redisStore) evalAll(ctx context.Context, script *redis.Script, calls []evalCall) ([][]any, error) {
	cmds := make([]*redis.Cmd, len(calls))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	if err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return nil, err
	}
	results := make([][]any, len(calls))
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			cmd = script.Run(ctx, s.client, calls[i].keys, calls[i].args...)
		}
		res, err := cmd.Slice()
		if err != nil {
			return nil, err
		}
		results[i] = res
	}
	return results, nil
}

// redisChangeArgs appends change, as luaChange reads it, to args.
func redisChangeArgs(args []any, change Change, idle time.Duration) []any {
	args = append(args, flag(change.Clear), len(change.Delete))
	for _, k := range change.Delete {
		args = append(args, k)
	}
	args = append(args, len(change.Set))
	for k, v := range change.Set {
		args = append(args, k, []byte(v))
	}
	user := ""
	if change.UserID != nil {
		user = *change.UserID
	}
	persistent := ""
	if change.Persistent != nil {
		persistent = flag(*change.Persistent)
	}
	expiry := ""
	if !change.Expiry.IsZero() {
		expiry = strconv.FormatInt(change.Expiry.UnixMicro(), 10)
	}
	var sessionIdle int64
	if change.SessionIdleTimeout != nil {
		sessionIdle = change.SessionIdleTimeout.Microseconds()
	}
	return append(args, flag(change.UserID != nil), user, persistent, expiry,
		flag(change.SessionIdleTimeout != nil), sessionIdle, idle.Microseconds(), change.MaxSize, change.TouchInterval.Microseconds())
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// recordFields returns rec as the hash's fields and values, "e" first.
func recordFields(rec *Record) []any {
	f := make([]any, 0, 16+2*len(rec.Values))
	f = append(f, "e", rec.Expiry.UnixMicro(), "c", rec.Created.UnixMicro(), "p", flag(rec.Persistent))
	if !rec.IdleExpiry.IsZero() {
		f = append(f, "ie", rec.IdleExpiry.UnixMicro())
	}
	if rec.IdleTimeout > 0 {
		f = append(f, "it", rec.IdleTimeout.Microseconds())
	}
	if !rec.LastSeen.IsZero() {
		f = append(f, "ls", rec.LastSeen.UnixMicro())
	}
	for _, kv := range [][2]string{{"u", rec.UserID}, {"ua", rec.UserAgent}, {"ip", rec.IP}} {
		if kv[1] != "" {
			f = append(f, kv[0], kv[1])
		}
	}
	for k, v := range rec.Values {
		f = append(f, "v:"+k, []byte(v))
	}
	return f
}

// decodeHash reads a record from HGETALL's flat reply; nil for no session
// (no hash, a marker or a tombstone).
func decodeHash(flat []any) (*Record, error) {
	fields := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		fields[k] = v
	}
	return decodeMap(fields)
}

// decodeMap reads a record from its hash; nil for no session.
func decodeMap(fields map[string]string) (*Record, error) {
	if _, ok := fields["e"]; !ok {
		return nil, nil
	}
	if _, moved := fields["m"]; moved {
		return nil, nil
	}
	rec := &Record{Values: map[string]json.RawMessage{}}
	for k, v := range fields {
		if name, ok := strings.CutPrefix(k, "v:"); ok {
			rec.Values[name] = json.RawMessage(v)
		}
	}
	return rec, decodeFields(rec, func(name string) (string, bool) {
		v, ok := fields[name]
		return v, ok
	})
}

// metaFields are the fields HMGET reads for decodeMeta, in the scripts'
// order (luaPrelude's meta).
var metaFields = []string{"u", "p", "c", "e", "it", "ie", "ls", "ua", "ip", "m"}

// decodeMeta reads a record's metadata from an HMGET of metaFields; nil
// for no session.
func decodeMeta(reply any) (*Record, error) {
	values, _ := reply.([]any)
	if len(values) < len(metaFields) {
		return nil, nil
	}
	if values[3] == nil || values[9] != nil {
		return nil, nil
	}
	rec := &Record{}
	return rec, decodeFields(rec, func(name string) (string, bool) {
		i := slices.Index(metaFields, name)
		v, ok := values[i].(string)
		return v, ok
	})
}

// decodeFields fills rec's metadata from get.
func decodeFields(rec *Record, get func(string) (string, bool)) error {
	var problems []error
	micros := func(name string) time.Time {
		v, ok := get(name)
		if !ok {
			return time.Time{}
		}
		t, err := parseMicros(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("field %s: %w", name, err))
		}
		return t
	}
	rec.UserID, _ = get("u")
	rec.UserAgent, _ = get("ua")
	rec.IP, _ = get("ip")
	p, _ := get("p")
	rec.Persistent = p == "1"
	rec.Created = micros("c")
	rec.Expiry = micros("e")
	rec.IdleExpiry = micros("ie")
	rec.LastSeen = micros("ls")
	if rec.LastSeen.IsZero() {
		rec.LastSeen = rec.Created
	}
	if v, ok := get("it"); ok {
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			problems = append(problems, fmt.Errorf("field it: %w", err))
		}
		rec.IdleTimeout = time.Duration(us) * time.Microsecond
	}
	return errors.Join(problems...)
}

// parseMicros reads microseconds since the epoch, as a string or integer.
func parseMicros(v any) (time.Time, error) {
	var us int64
	switch v := v.(type) {
	case int64:
		us = v
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not a time in microseconds", v)
		}
		us = n
	default:
		return time.Time{}, fmt.Errorf("%v is not a time in microseconds", v)
	}
	return time.UnixMicro(us), nil
}

// changeReply reads the status of a script that changed a session (set,
// change, take): nil when it did, with the four fields every such reply
// has; ErrTooLarge when the change would pass the size cap; ErrNotFound
// when there was no session to change.
func (s *redisStore) changeReply(op, key string, res []any) error {
	switch replyStatus(res) {
	case 1:
		if len(res) != 4 {
			return s.malformed(op, key)
		}
		return nil
	case -1:
		return ErrTooLarge
	default:
		return ErrNotFound
	}
}

// replyStatus is the leading integer of a script's reply.
func replyStatus(res []any) int64 {
	if len(res) == 0 {
		return 0
	}
	n, _ := res[0].(int64)
	return n
}

// decodeError reports a stored record that cannot be read: a value of the
// wrong type under the key, or metadata that is not what the store wrote.
func (s *redisStore) decodeError(key string, err error) error {
	return fmt.Errorf("%w: redis record %s (delete it, or let it expire): %w", ErrCorrupt, s.keys.Record(key), err)
}

func (s *redisStore) malformed(op, key string) error {
	return fmt.Errorf("session: redis %s of %s: unexpected reply from the server's script", op, s.keys.Record(key))
}

// fail turns a Redis error into the Store's: a record of the wrong type is
// a decoding error, and anything that means Redis could not answer wraps
// ErrUnavailable.
func (s *redisStore) fail(ctx context.Context, op, key string, err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrTooLarge) {
		return err
	}
	if redis.HasErrorPrefix(err, "WRONGTYPE") || strings.Contains(err.Error(), " does not decode") {
		return s.decodeError(key, err) // a script's error({err = 'ERR session record ... does not decode'}) too
	}
	return &redisStoreError{op: op, key: key, err: classifyRedis(ctx, err)}
}

// redisStoreError names the operation that failed and on what.
type redisStoreError struct {
	op, key string
	err     error
}

func (e *redisStoreError) Error() string {
	if e.key == "" {
		return fmt.Sprintf("session: redis %s: %v", e.op, e.err)
	}
	return fmt.Sprintf("session: redis %s of %s: %v", e.op, e.key, e.err)
}

func (e *redisStoreError) Unwrap() error { return e.err }

// classifyRedis wraps err in ErrUnavailable when it means Redis could not
// answer now but may soon: no connection, a dropped one, a timeout, a
// cluster reconfiguring, a server loading its data or out of memory. A
// context the caller canceled is left as it is.
func classifyRedis(ctx context.Context, err error) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	if redisUnreachable(err) {
		return &unavailableError{err}
	}
	return err
}

func redisUnreachable(err error) bool {
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	if _, moved := redis.IsMovedError(err); moved {
		return true // redirects that did not settle: slots are moving
	}
	if _, ask := redis.IsAskError(err); ask {
		return true
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted),
		redis.IsClusterDownError(err), redis.IsTryAgainError(err), redis.IsLoadingError(err),
		redis.IsMasterDownError(err), redis.IsReadOnlyError(err), redis.IsMaxClientsError(err),
		redis.IsOOMError(err), redis.IsNoReplicasError(err),
		redis.HasErrorPrefix(err, "BUSY"):
		return true
	}
	return false
}

// countLive counts the live sessions, for an Observer, from the deadline
// sets (see rediskeys.Layout.Count): no SCAN.
func (s *redisStore) countLive(ctx context.Context) (int64, error) {
	st, err := s.keys.Count(ctx, s.client)
	if err != nil {
		return 0, s.fail(ctx, "count", "", err)
	}
	return st.Live, nil
}
