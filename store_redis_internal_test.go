package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smartscheduler/session/internal/pgtest"
	"github.com/smartscheduler/session/internal/redistest"
)

// The Redis store's own properties beyond storetest: the user index's
// eventual consistency, renewal racing a revocation, records that do not
// decode, and errors that mean "unavailable".

// redisStores runs test on a store on the shared standalone server and one
// on the shared cluster.
func redisStores(t *testing.T, test func(t *testing.T, s *RedisStore, client redis.UniversalClient)) {
	for name, url := range map[string]func(t *testing.T) string{
		"standalone": func(t *testing.T) string { return redistest.URL(t) },
		"cluster":    func(t *testing.T) string { return redistest.SharedCluster(t).URL() },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client := redistest.Client(t, url(t))
			s, err := newRedisStore(client, RedisOptions{Prefix: redistest.Prefix(t, client)})
			if err != nil {
				t.Fatal(err)
			}
			test(t, s, client)
		})
	}
}

func newTestKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func liveRecord(user string) *Record {
	now := time.Now()
	return &Record{Values: map[string]json.RawMessage{"a": json.RawMessage(`1`)}, UserID: user,
		Created: now, LastSeen: now, Expiry: now.Add(time.Hour)}
}

func insertRecord(t *testing.T, s *RedisStore, rec *Record) string {
	t.Helper()
	key := newTestKey()
	if err := s.Insert(t.Context(), key, rec); err != nil {
		t.Fatalf("Insert: %v", err)
	}
	return key
}

// indexed returns the keys userID's index holds, as stored.
func indexed(t *testing.T, s *RedisStore, client redis.UniversalClient, userID string) []string {
	t.Helper()
	keys, err := client.ZRange(t.Context(), s.keys.User(userID), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestRedisUserIndexIsEventuallyConsistent: entries may outlive their
// sessions, but no read reports them and every read drops them; a session
// is listed under its user as soon as the call that bound it returns.
func TestRedisUserIndexIsEventuallyConsistent(t *testing.T) {
	t.Parallel()
	redisStores(t, func(t *testing.T, s *RedisStore, client redis.UniversalClient) {
		ctx := t.Context()
		kept := insertRecord(t, s, liveRecord("alice"))
		dropped := insertRecord(t, s, liveRecord("alice"))
		// The record goes behind the index's back, as when Redis evicts it.
		if err := client.Del(ctx, s.keys.Record(dropped)).Err(); err != nil {
			t.Fatal(err)
		}
		if got := indexed(t, s, client, "alice"); len(got) != 2 {
			t.Fatalf("the index holds %v; want both entries before any read", got)
		}
		infos, err := s.ListUser(ctx, "alice")
		if err != nil || len(infos) != 1 || infos[0].Key != kept {
			t.Fatalf("ListUser = %+v, %v; want only the live session", infos, err)
		}
		if got := indexed(t, s, client, "alice"); len(got) != 1 || got[0] != kept {
			t.Errorf("after ListUser the index holds %v; want the stale entry dropped", got)
		}

		// Moving a session to another user lists it there at once, and no
		// longer under the first.
		bob := "bob"
		if _, err := s.Apply(ctx, kept, Change{UserID: &bob}); err != nil {
			t.Fatal(err)
		}
		if infos, err := s.ListUser(ctx, "bob"); err != nil || len(infos) != 1 || infos[0].Key != kept {
			t.Errorf("ListUser(bob) right after the Apply = %+v, %v; want the moved session", infos, err)
		}
		if infos, err := s.ListUser(ctx, "alice"); err != nil || len(infos) != 0 {
			t.Errorf("ListUser(alice) after the move = %+v, %v; want none", infos, err)
		}
		if got := indexed(t, s, client, "alice"); len(got) != 0 {
			t.Errorf("alice's index still holds %v", got)
		}

		// An idle-expired session stays indexed until Prune, which drops
		// its entry and reports its user.
		idle := liveRecord("carol")
		idle.IdleExpiry = time.Now().Add(-time.Minute)
		idleKey := insertRecord(t, s, idle)
		if got := indexed(t, s, client, "carol"); len(got) != 1 {
			t.Fatalf("carol's index holds %v; want the idle-expired session until a read or Prune", got)
		}
		pruned, err := s.Prune(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, info := range pruned {
			found = found || info.Key == idleKey && info.UserID == "carol"
		}
		if !found {
			t.Errorf("Prune = %+v; want carol's expired session", pruned)
		}
		if got := indexed(t, s, client, "carol"); len(got) != 0 {
			t.Errorf("after Prune carol's index holds %v", got)
		}
	})
}

// TestRedisRenewalRacingRevocation stops a renewal between its two steps
// and revokes the user then: the revocation follows the marker to the new
// key, and the renewal's second step finds it revoked.
func TestRedisRenewalRacingRevocation(t *testing.T) {
	t.Parallel()
	redisStores(t, func(t *testing.T, s *RedisStore, client redis.UniversalClient) {
		ctx := t.Context()
		oldKey, newKey := insertRecord(t, s, liveRecord("alice")), newTestKey()
		args := redisChangeArgs([]any{oldKey, newKey, redisMarkerTTL.Milliseconds()}, Change{}, 0)
		if err := redisTake.Run(ctx, client, []string{s.keys.Record(oldKey), s.keys.DeadlinesOf(oldKey)}, args...).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, oldKey, Change{Set: map[string]json.RawMessage{"b": json.RawMessage(`2`)}}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Apply to a session being renewed = %v; want ErrNotFound (refused, not lost)", err)
		}
		if _, err := s.DestroyUser(ctx, "alice", ""); err != nil {
			t.Fatal(err)
		}
		rec := liveRecord("alice")
		if err := s.create(ctx, oldKey, newKey, rec); !errors.Is(err, ErrNotFound) {
			t.Errorf("the renewal's second step after a revocation = %v; want ErrNotFound", err)
		}
		for _, key := range []string{oldKey, newKey} {
			if _, err := s.Load(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Load after the revocation = %v; want ErrNotFound", err)
			}
		}
	})
}

// TestRedisFailedRenewalKeepsTheSession: when the new key cannot be
// created, the old key is a session again.
func TestRedisFailedRenewalKeepsTheSession(t *testing.T) {
	t.Parallel()
	redisStores(t, func(t *testing.T, s *RedisStore, client redis.UniversalClient) {
		ctx := t.Context()
		oldKey := insertRecord(t, s, liveRecord("alice"))
		taken := insertRecord(t, s, liveRecord("bob"))
		if _, err := s.Rekey(ctx, oldKey, taken, Change{}, liveRecord("")); !errors.Is(err, ErrConflict) {
			t.Fatalf("Rekey onto an existing key = %v; want ErrConflict", err)
		}
		rec, err := s.Load(ctx, oldKey)
		if err != nil || rec.UserID != "alice" {
			t.Fatalf("Load of the old key after the failed renewal = %+v, %v; want alice's session", rec, err)
		}
		if infos, err := s.ListUser(ctx, "alice"); err != nil || len(infos) != 1 {
			t.Errorf("ListUser(alice) = %+v, %v; want the restored session", infos, err)
		}
	})
}

// TestRedisRecordThatDoesNotDecode: a record someone else wrote, or of the
// wrong type, is ErrCorrupt naming its key in every call, never a panic.
func TestRedisRecordThatDoesNotDecode(t *testing.T) {
	t.Parallel()
	redisStores(t, func(t *testing.T, s *RedisStore, client redis.UniversalClient) {
		ctx := t.Context()
		garbled := insertRecord(t, s, liveRecord(""))
		if err := client.HSet(ctx, s.keys.Record(garbled), "c", "yesterday").Err(); err != nil {
			t.Fatal(err)
		}
		wrongType := newTestKey()
		if err := client.Set(ctx, s.keys.Record(wrongType), "a string", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{garbled, wrongType} {
			_, err := s.Load(ctx, key)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), s.keys.Record(key)) {
				t.Errorf("Load = %v; want ErrCorrupt naming the record", err)
			}
			if _, err := s.Modify(ctx, key, func(*Record) error { return nil }); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Modify = %v; want ErrCorrupt", err)
			}
		}
		if _, err := s.Apply(ctx, wrongType, Change{}); err == nil || errors.Is(err, ErrUnavailable) {
			t.Errorf("Apply to a string key = %v; want an error", err)
		}
	})
}

// TestRedisUnavailableIsErrUnavailable cuts the connections to a server:
// every call wraps ErrUnavailable within its deadline, and works again
// once the server is back.
func TestRedisUnavailableIsErrUnavailable(t *testing.T) {
	t.Parallel()
	server := redistest.NewServer(t, false)
	proxy := pgtest.NewTCPProxy(t, server.Addr())
	client := redistest.Client(t, "redis://"+proxy.Addr())
	s, err := newRedisStore(client, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := insertRecord(t, s, liveRecord("alice"))
	proxy.Cut()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	calls := map[string]func() error{
		"Load":     func() error { _, err := s.Load(ctx, key); return err },
		"Apply":    func() error { _, err := s.Apply(ctx, key, Change{}); return err },
		"Modify":   func() error { _, err := s.Modify(ctx, key, func(*Record) error { return nil }); return err },
		"ListUser": func() error { _, err := s.ListUser(ctx, "alice"); return err },
		"Prune":    func() error { _, err := s.Prune(ctx, 10); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s during the outage = %v; want ErrUnavailable", name, err)
		}
	}
	proxy.Restore()
	if _, err := s.Load(t.Context(), key); err != nil {
		t.Errorf("Load after the outage: %v", err)
	}
}

// TestRedisClassifiesClusterErrors: the replies of a cluster in failover
// and of a server that cannot serve now are ErrUnavailable; others are not.
func TestRedisClassifiesClusterErrors(t *testing.T) {
	t.Parallel()
	for reply, want := range map[string]bool{
		"CLUSTERDOWN The cluster is down":                               true,
		"TRYAGAIN Multiple keys request during rehashing of slot":       true,
		"LOADING Redis is loading the dataset in memory":                true,
		"MOVED 3999 127.0.0.1:6381":                                     true,
		"MASTERDOWN Link with MASTER is down":                           true,
		"READONLY You can't write against a read only replica.":         true,
		"OOM command not allowed when used memory > 'maxmemory'.":       true,
		"BUSY Redis is busy running a script.":                          true,
		"ERR wrong number of arguments for 'hset' command":              false,
		"NOPERM this user has no permissions to run the 'eval' command": false,
	} {
		err := classifyRedis(t.Context(), redisReply(reply))
		if got := errors.Is(err, ErrUnavailable); got != want {
			t.Errorf("%q: unavailable = %v; want %v", reply, got, want)
		}
	}
}

// redisReply is an error reply as go-redis returns it.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}
