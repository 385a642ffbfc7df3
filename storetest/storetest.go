// Package storetest checks that a session.Store honours the contract written
// beside the interface, and every optional interface (session.UserIndex,
// session.Pruner) the store implements. Every Store in this module passes
// it, and so should any other:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) session.Store { return newMyStore(t) })
//	}
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
)

// Run checks every point of the Store contract in parallel subtests, and
// those of each optional interface the store implements. Each subtest calls
// newStore for a store of its own, which must start empty and share nothing
// with the others; newStore registers any cleanup on the t it is given.
//
// Times are compared to the microsecond, PostgreSQL's resolution, and JSON
// values by meaning, since a store may re-encode them. Expired records are
// made with deadlines an hour in the past, so no test waits.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	probe := newStore(t)
	_, users := probe.(session.UserIndex)
	_, pruner := probe.(session.Pruner)
	for _, group := range []struct {
		claimed bool
		cases   []testCase
	}{{true, cases}, {users, userCases}, {pruner, prunerCases}} {
		if !group.claimed {
			continue
		}
		for _, tc := range group.cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.test(t, newStore(t))
			})
		}
	}
}

type testCase struct {
	name string
	test func(t *testing.T, s session.Store)
}

// cases check the Store interface every store implements.
var cases = []testCase{
	{"LoadMissing", testLoadMissing},
	{"InsertThenLoad", testInsertThenLoad},
	{"InsertAnonymousWithoutValues", testInsertAnonymous},
	{"InsertExistingConflicts", testInsertConflict},
	{"ExpiredIsNotFound", testExpired},
	{"Apply", testApply},
	{"ApplyCapsIdleExpiryAtExpiry", testApplyCapsIdle},
	{"ApplyConcurrentKeysAllLand", testApplyConcurrent},
	{"ApplyDeletedDoesNotRecreate", testApplyDeleted},
	{"Rekey", testRekey},
	{"RekeyMissingDoesNotCreate", testRekeyMissing},
	{"RekeyKeepsAConcurrentApply", testRekeyConcurrent},
	{"Modify", testModify},
	{"UpdateErrorStoresNothing", testModifyError},
	{"UpdateMissing", testModifyMissing},
	{"UpdateConcurrent", testModifyConcurrent},
	{"ApplyWithoutValuesTouches", testTouch},
	{"ApplyLifetimes", testApplyLifetimes},
	{"ApplyHoldsTheSlideBack", testApplyHoldsTheSlideBack},
	{"ApplyMaxSize", testApplyMaxSize},
	{"RekeyKeepsExpiry", testRekeyKeepsExpiry},
	{"RekeyMaxSize", testRekeyMaxSize},
	{"DeleteIsIdempotent", testDelete},
	{"NoAliasing", testNoAliasing},
}

// userCases check session.UserIndex.
var userCases = []testCase{
	{"DestroyUser", testDestroyUser},
	{"DestroyUserKeeps", testDestroyUserKeeps},
	{"ListUser", testListUser},
	{"TrimUser", testTrimUser},
	{"TrimUserConcurrent", testTrimUserConcurrent},
}

// prunerCases check session.Pruner.
var prunerCases = []testCase{
	{"Prune", testPrune},
	{"PruneLimit", testPruneLimit},
}

// timeout bounds each store call, so that a store that hangs fails the test
// with a message instead of the whole binary timing out.
const timeout = 30 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return c
}

// newKey returns a key shaped like the real ones: the hex SHA-256 of a
// random token.
func newKey() string {
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		panic(err)
	}
	sum := sha256.Sum256(token)
	return hex.EncodeToString(sum[:])
}

// newRecord returns a live record for user with the given values. Times keep
// their nanoseconds, to check that stores tolerate their own resolution.
func newRecord(user string, values map[string]string) *session.Record {
	now := time.Now().Round(0)
	rec := &session.Record{
		Values:     map[string]json.RawMessage{},
		UserID:     user,
		Created:    now,
		Expiry:     now.Add(24 * time.Hour),
		IdleExpiry: now.Add(time.Hour),
		LastSeen:   now,
		UserAgent:  "Mozilla/5.0 (X11; Linux x86_64) storetest",
		IP:         "192.0.2.7",
	}
	for k, v := range values {
		rec.Values[k] = json.RawMessage(v)
	}
	return rec
}

func insert(t *testing.T, s session.Store, rec *session.Record) string {
	t.Helper()
	key := newKey()
	if err := s.Insert(ctx(t), key, rec); err != nil {
		t.Fatalf("Insert: %v", err)
	}
	return key
}

func load(t *testing.T, s session.Store, key string) *session.Record {
	t.Helper()
	rec, err := s.Load(ctx(t), key)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if rec.Values == nil {
		t.Fatal("Load returned nil Values; want a non-nil map")
	}
	return rec
}

func wantNotFound(t *testing.T, s session.Store, key string) {
	t.Helper()
	if rec, err := s.Load(ctx(t), key); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Load = %+v, %v; want ErrNotFound", rec, err)
	}
}

// sameTime reports whether a and b are the same instant at a microsecond's
// resolution, allowing for a store that truncates and one that rounds.
func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -time.Microsecond && d < time.Microsecond
}

func checkTime(t *testing.T, field string, got, want time.Time) {
	t.Helper()
	if got.IsZero() != want.IsZero() || !sameTime(got, want) {
		t.Errorf("%s = %v; want %v", field, got, want)
	}
}

// checkValues compares JSON by meaning: a store may re-encode it (jsonb
// reorders keys and drops spaces).
func checkValues(t *testing.T, got, want map[string]json.RawMessage) {
	t.Helper()
	decode := func(m map[string]json.RawMessage) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			var x any
			if err := json.Unmarshal(v, &x); err != nil {
				t.Fatalf("value %q is not JSON: %v", k, err)
			}
			out[k] = x
		}
		return out
	}
	if g, w := decode(got), decode(want); !reflect.DeepEqual(g, w) {
		t.Errorf("Values = %v; want %v", g, w)
	}
}

// checkRecord compares everything a store keeps except LastSeen and
// LoadedAt, which are the store's clock.
func checkRecord(t *testing.T, got, want *session.Record) {
	t.Helper()
	checkValues(t, got.Values, want.Values)
	checkMetadata(t, got, want)
}

// checkMetadata compares everything but the values.
func checkMetadata(t *testing.T, got, want *session.Record) {
	t.Helper()
	if got.UserID != want.UserID {
		t.Errorf("UserID = %q; want %q", got.UserID, want.UserID)
	}
	if got.Persistent != want.Persistent {
		t.Errorf("Persistent = %v; want %v", got.Persistent, want.Persistent)
	}
	checkTime(t, "Created", got.Created, want.Created)
	checkTime(t, "Expiry", got.Expiry, want.Expiry)
	checkTime(t, "IdleExpiry", got.IdleExpiry, want.IdleExpiry)
	if got.IdleTimeout != want.IdleTimeout {
		t.Errorf("IdleTimeout = %v; want %v", got.IdleTimeout, want.IdleTimeout)
	}
	if got.UserAgent != want.UserAgent || got.IP != want.IP {
		t.Errorf("UserAgent, IP = %q, %q; want %q, %q", got.UserAgent, got.IP, want.UserAgent, want.IP)
	}
}

// checkSeen checks that LastSeen is the store's clock at the last write.
func checkSeen(t *testing.T, rec *session.Record) {
	t.Helper()
	if !sameTime(rec.LastSeen, rec.LoadedAt) && rec.LastSeen.After(rec.LoadedAt) {
		t.Errorf("LastSeen = %v, after LoadedAt %v", rec.LastSeen, rec.LoadedAt)
	}
	if d := time.Since(rec.LastSeen); d < -time.Minute || d > time.Minute {
		t.Errorf("LastSeen = %v, %v from now; want the store's clock at the last write", rec.LastSeen, -d)
	}
}

// checkLoadedAt allows a minute of skew between the test's clock and the
// store's, which may be a database server's.
func checkLoadedAt(t *testing.T, rec *session.Record) {
	t.Helper()
	if d := time.Since(rec.LoadedAt); d < -time.Minute || d > time.Minute {
		t.Errorf("LoadedAt = %v, %v from now; want the store's clock, near now", rec.LoadedAt, -d)
	}
}

func testLoadMissing(t *testing.T, s session.Store) {
	wantNotFound(t, s, newKey())
}

func testInsertThenLoad(t *testing.T, s session.Store) {
	rec := newRecord("user-1", map[string]string{
		"cart":    `{"items": [1, 2, 3], "note": "señor ✓"}`,
		"count":   `42`,
		"flag":    `true`,
		"nothing": `null`,
	})
	rec.Persistent = true
	rec.IdleTimeout = 90 * time.Minute
	key := insert(t, s, rec)
	got := load(t, s, key)
	checkRecord(t, got, rec)
	checkTime(t, "LastSeen", got.LastSeen, rec.LastSeen)
	checkLoadedAt(t, got)
}

func testInsertAnonymous(t *testing.T, s session.Store) {
	rec := newRecord("", nil)
	rec.Values = nil
	rec.IdleExpiry = time.Time{}
	rec.UserAgent, rec.IP = "", ""
	key := insert(t, s, rec)
	got := load(t, s, key)
	rec.Values = map[string]json.RawMessage{}
	checkRecord(t, got, rec)
}

func testInsertConflict(t *testing.T, s session.Store) {
	first := newRecord("user-1", map[string]string{"who": `"first"`})
	key := insert(t, s, first)
	second := newRecord("user-2", map[string]string{"who": `"second"`})
	if err := s.Insert(ctx(t), key, second); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("second Insert = %v; want ErrConflict", err)
	}
	checkRecord(t, load(t, s, key), first)
}

func testExpired(t *testing.T, s session.Store) {
	hourAgo := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		modify func(*session.Record)
	}{
		{"Absolute", func(r *session.Record) { r.Expiry = hourAgo; r.IdleExpiry = time.Time{} }},
		{"AbsoluteWithIdleAhead", func(r *session.Record) { r.Expiry = hourAgo }},
		{"Idle", func(r *session.Record) { r.IdleExpiry = hourAgo }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecord("user-1", map[string]string{"a": `1`})
			rec.Created = hourAgo.Add(-time.Hour)
			tc.modify(rec)
			key := insert(t, s, rec)
			wantNotFound(t, s, key)
			change := session.Change{Set: map[string]json.RawMessage{"a": json.RawMessage(`2`)}, IdleTimeout: time.Hour}
			if _, err := s.Apply(ctx(t), key, change); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Apply = %v; want ErrNotFound", err)
			}
			if _, err := s.Apply(ctx(t), key, session.Change{IdleTimeout: time.Hour}); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Apply of a touch = %v; want ErrNotFound", err)
			}
			called := false
			if _, err := s.Modify(ctx(t), key, func(*session.Record) error { called = true; return nil }); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Modify = %v; want ErrNotFound", err)
			}
			if called {
				t.Error("Modify called fn on an expired record")
			}
			if _, err := s.Rekey(ctx(t), key, newKey(), session.Change{}, newRecord("user-1", nil)); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Rekey = %v; want ErrNotFound", err)
			}
			wantNotFound(t, s, key)
		})
	}
}

func testApply(t *testing.T, s session.Store) {
	orig := newRecord("user-1", map[string]string{"a": `1`, "b": `2`, "c": `3`})
	key := insert(t, s, orig)
	user, persistent := "user-2", true
	got, err := s.Apply(ctx(t), key, session.Change{
		Delete:      []string{"b", "never-set"},
		Set:         map[string]json.RawMessage{"a": json.RawMessage(`"two"`), "d": json.RawMessage(`{"new": true}`)},
		UserID:      &user,
		Persistent:  &persistent,
		IdleTimeout: 2 * time.Hour,
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := newRecord("user-2", map[string]string{"a": `"two"`, "c": `3`, "d": `{"new": true}`})
	want.Persistent = true
	want.Created, want.Expiry = orig.Created, orig.Expiry
	want.IdleExpiry = got.LoadedAt.Add(2 * time.Hour)
	checkApplied(t, got, want)
	checkLoadedAt(t, got)
	checkSeen(t, got)
	loaded := load(t, s, key)
	checkRecord(t, loaded, want)
	checkTime(t, "LastSeen", loaded.LastSeen, got.LastSeen)

	// Clear comes first, then Set; a nil UserID and Persistent change
	// neither, and no IdleTimeout leaves the idle expiry alone.
	got, err = s.Apply(ctx(t), key, session.Change{Clear: true, Set: map[string]json.RawMessage{"e": json.RawMessage(`5`)}})
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	want.Values = map[string]json.RawMessage{"e": json.RawMessage(`5`)}
	checkApplied(t, got, want)
	checkRecord(t, load(t, s, key), want)
}

// checkApplied checks what Apply returns: the record's metadata, without
// its values.
func checkApplied(t *testing.T, got, want *session.Record) {
	t.Helper()
	if got.Values != nil {
		t.Errorf("Apply returned Values %v; want nil (see Store.Apply)", got.Values)
	}
	checkMetadata(t, got, want)
}

func testApplyCapsIdle(t *testing.T, s session.Store) {
	rec := newRecord("user-1", nil)
	key := insert(t, s, rec)
	got, err := s.Apply(ctx(t), key, session.Change{IdleTimeout: 48 * time.Hour})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkTime(t, "IdleExpiry", got.IdleExpiry, rec.Expiry)
}

// testApplyConcurrent is the property the Manager relies on for "no lost
// updates": concurrent changes to different keys all land.
func testApplyConcurrent(t *testing.T, s session.Store) {
	const writers = 16
	key := insert(t, s, newRecord("user-1", map[string]string{"base": `0`}))
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			change := session.Change{Set: map[string]json.RawMessage{fmt.Sprintf("k%02d", i): json.RawMessage(fmt.Sprint(i))}}
			if _, err := s.Apply(ctx(t), key, change); err != nil {
				t.Errorf("Apply %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	got := load(t, s, key)
	if len(got.Values) != writers+1 {
		t.Errorf("%d values after %d concurrent Applies of different keys; want %d: %v", len(got.Values), writers, writers+1, got.Values)
	}
}

func testApplyDeleted(t *testing.T, s session.Store) {
	key := insert(t, s, newRecord("user-1", map[string]string{"a": `1`}))
	if _, err := s.Destroy(ctx(t), key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	change := session.Change{Set: map[string]json.RawMessage{"a": json.RawMessage(`2`)}}
	if _, err := s.Apply(ctx(t), key, change); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Apply after Delete = %v; want ErrNotFound", err)
	}
	wantNotFound(t, s, key)
}

func testRekey(t *testing.T, s session.Store) {
	orig := newRecord("user-1", map[string]string{"a": `1`, "b": `2`})
	orig.IdleTimeout = 3 * time.Hour
	oldKey := insert(t, s, orig)
	fresh := newRecord("", nil)
	fresh.Created = fresh.Created.Add(time.Minute)
	fresh.Expiry = fresh.Expiry.Add(time.Hour)
	fresh.IdleExpiry = fresh.IdleExpiry.Add(time.Minute)
	fresh.UserAgent, fresh.IP = "the renewing browser", "2001:db8::1"
	user := "user-2"
	newKey := newKey()
	got, err := s.Rekey(ctx(t), oldKey, newKey, session.Change{Delete: []string{"b"}, Set: map[string]json.RawMessage{"c": json.RawMessage(`3`)}, UserID: &user}, fresh)
	if err != nil {
		t.Fatalf("Rekey: %v", err)
	}
	want := newRecord("user-2", map[string]string{"a": `1`, "c": `3`})
	want.Created, want.Expiry, want.IdleExpiry = fresh.Created, fresh.Expiry, fresh.IdleExpiry
	want.IdleTimeout = orig.IdleTimeout
	want.UserAgent, want.IP = fresh.UserAgent, fresh.IP
	checkRecord(t, got, want)
	checkLoadedAt(t, got)
	checkSeen(t, got)
	checkRecord(t, load(t, s, newKey), want)
	wantNotFound(t, s, oldKey)
}

// testRekeyKeepsExpiry renews without a new absolute deadline: a fresh
// record with a zero Expiry keeps the session's own, and its idle expiry
// never passes it.
func testRekeyKeepsExpiry(t *testing.T, s session.Store) {
	orig := newRecord("user-1", map[string]string{"a": `1`})
	orig.Expiry = orig.Created.Add(30 * time.Minute)
	oldKey := insert(t, s, orig)
	fresh := newRecord("user-1", nil)
	fresh.Expiry = time.Time{}
	newKey := newKey()
	got, err := s.Rekey(ctx(t), oldKey, newKey, session.Change{}, fresh)
	if err != nil {
		t.Fatalf("Rekey: %v", err)
	}
	checkTime(t, "Expiry", got.Expiry, orig.Expiry)
	checkTime(t, "IdleExpiry", got.IdleExpiry, orig.Expiry) // fresh's hour, capped
	checkTime(t, "Expiry after load", load(t, s, newKey).Expiry, orig.Expiry)
}

func testRekeyMissing(t *testing.T, s session.Store) {
	oldKey := insert(t, s, newRecord("user-1", map[string]string{"a": `1`}))
	if _, err := s.Destroy(ctx(t), oldKey); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	newKey := newKey()
	if _, err := s.Rekey(ctx(t), oldKey, newKey, session.Change{}, newRecord("user-1", nil)); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Rekey of a deleted record = %v; want ErrNotFound", err)
	}
	wantNotFound(t, s, newKey)
}

// testRekeyConcurrent races a renewal with a write to the same session:
// whichever commits first, the write is in the renewed record.
func testRekeyConcurrent(t *testing.T, s session.Store) {
	for i := range 8 {
		oldKey := insert(t, s, newRecord("user-1", map[string]string{"a": `1`}))
		newKey := newKey()
		var wg sync.WaitGroup
		var applyErr error
		wg.Go(func() {
			_, applyErr = s.Apply(ctx(t), oldKey, session.Change{Set: map[string]json.RawMessage{"cart": json.RawMessage(fmt.Sprint(i))}})
		})
		if _, err := s.Rekey(ctx(t), oldKey, newKey, session.Change{}, newRecord("user-1", nil)); err != nil {
			t.Fatalf("Rekey: %v", err)
		}
		wg.Wait()
		if applyErr != nil {
			if !errors.Is(applyErr, session.ErrNotFound) {
				t.Fatalf("Apply racing a Rekey: %v", applyErr)
			}
			continue // the renewal came first: the write was refused, not lost
		}
		if _, ok := load(t, s, newKey).Values["cart"]; !ok {
			t.Fatalf("round %d: a write acknowledged before the renewal is missing from the renewed record", i)
		}
	}
}

func testModify(t *testing.T, s session.Store) {
	orig := newRecord("user-1", map[string]string{"a": `1`})
	key := insert(t, s, orig)
	got, err := s.Modify(ctx(t), key, func(r *session.Record) error {
		checkRecord(t, r, orig)
		checkLoadedAt(t, r)
		r.Values["b"] = json.RawMessage(`[1,2]`)
		r.UserID = "user-2"
		r.IdleTimeout = time.Hour
		return nil
	})
	if err != nil {
		t.Fatalf("Modify: %v", err)
	}
	want := newRecord("user-2", map[string]string{"a": `1`, "b": `[1,2]`})
	want.Created, want.Expiry, want.IdleExpiry = orig.Created, orig.Expiry, orig.IdleExpiry
	want.IdleTimeout = time.Hour
	checkRecord(t, got, want)
	checkLoadedAt(t, got)
	checkSeen(t, got)
	checkRecord(t, load(t, s, key), want)
}

func testModifyError(t *testing.T, s session.Store) {
	orig := newRecord("user-1", map[string]string{"a": `1`})
	key := insert(t, s, orig)
	boom := errors.New("boom")
	_, err := s.Modify(ctx(t), key, func(r *session.Record) error {
		r.Values["a"] = json.RawMessage(`2`)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Modify = %v; want fn's error", err)
	}
	checkRecord(t, load(t, s, key), orig)
}

func testModifyMissing(t *testing.T, s session.Store) {
	called := false
	_, err := s.Modify(ctx(t), newKey(), func(*session.Record) error { called = true; return nil })
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Modify = %v; want ErrNotFound", err)
	}
	if called {
		t.Error("Modify called fn for a missing record")
	}
}

func testModifyConcurrent(t *testing.T, s session.Store) {
	const writers = 16
	key := insert(t, s, newRecord("user-1", map[string]string{"n": `0`}))
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			_, err := s.Modify(ctx(t), key, func(r *session.Record) error {
				var n int
				if err := json.Unmarshal(r.Values["n"], &n); err != nil {
					return err
				}
				r.Values["n"], _ = json.Marshal(n + 1)
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Modify: %v", err)
		}
	}
	got := load(t, s, key)
	checkValues(t, got.Values, map[string]json.RawMessage{"n": json.RawMessage(`16`)})
}

// testTouch: an Apply that changes no value slides the idle expiry and
// LastSeen and leaves everything else as it was.
func testTouch(t *testing.T, s session.Store) {
	orig := newRecord("user-1", map[string]string{"a": `1`})
	orig.LastSeen = orig.Created.Add(-time.Hour)
	key := insert(t, s, orig)
	got, err := s.Apply(ctx(t), key, session.Change{IdleTimeout: 90 * time.Minute})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkSeen(t, got)
	want := *orig
	want.IdleExpiry = got.LoadedAt.Add(90 * time.Minute)
	checkApplied(t, got, &want)
	loaded := load(t, s, key)
	checkRecord(t, loaded, &want)
	checkTime(t, "LastSeen", loaded.LastSeen, got.LastSeen)
}

// testApplyLifetimes gives a session lifetimes of its own: a new absolute
// expiry, and an idle timeout that then slides it instead of the
// configured one.
func testApplyLifetimes(t *testing.T, s session.Store) {
	orig := newRecord("admin", nil)
	key := insert(t, s, orig)
	expiry := orig.Created.Add(2 * time.Hour)
	idle := 10 * time.Minute
	got, err := s.Apply(ctx(t), key, session.Change{Expiry: expiry, SessionIdleTimeout: &idle, IdleTimeout: time.Hour})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkTime(t, "Expiry", got.Expiry, expiry)
	if got.IdleTimeout != idle {
		t.Errorf("IdleTimeout = %v; want %v", got.IdleTimeout, idle)
	}
	checkTime(t, "IdleExpiry", got.IdleExpiry, got.LoadedAt.Add(idle))
	// The session's own idle timeout wins over the configured one from now on.
	got, err = s.Apply(ctx(t), key, session.Change{IdleTimeout: time.Hour})
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	checkTime(t, "IdleExpiry after a touch", got.IdleExpiry, got.LoadedAt.Add(idle))
	// An expiry sooner than the idle expiry caps it.
	soon := got.LoadedAt.Add(time.Minute)
	got, err = s.Apply(ctx(t), key, session.Change{Expiry: soon})
	if err != nil {
		t.Fatalf("third Apply: %v", err)
	}
	checkTime(t, "IdleExpiry under a sooner Expiry", got.IdleExpiry, soon)
	loaded := load(t, s, key)
	checkTime(t, "Expiry after load", loaded.Expiry, soon)
	if loaded.IdleTimeout != idle {
		t.Errorf("IdleTimeout after load = %v; want %v", loaded.IdleTimeout, idle)
	}
	// Without an idle timeout of either kind, a touch leaves no idle expiry.
	plain := newRecord("", nil)
	plain.IdleExpiry = time.Time{}
	plainKey := insert(t, s, plain)
	got, err = s.Apply(ctx(t), plainKey, session.Change{Set: map[string]json.RawMessage{"a": json.RawMessage(`1`)}})
	if err != nil {
		t.Fatalf("Apply without idle timeout: %v", err)
	}
	checkTime(t, "IdleExpiry without idle timeout", got.IdleExpiry, time.Time{})
}

// testApplyHoldsTheSlideBack: with a TouchInterval, a write soon after the
// last slide leaves the idle expiry where it is; one after enough of the
// idle window slides it.
func testApplyHoldsTheSlideBack(t *testing.T, s session.Store) {
	recent := newRecord("user-1", nil)
	recent.IdleExpiry = time.Now().Add(50 * time.Minute)
	key := insert(t, s, recent)
	change := session.Change{Set: map[string]json.RawMessage{"a": json.RawMessage(`1`)}, IdleTimeout: time.Hour, TouchInterval: 20 * time.Minute}
	got, err := s.Apply(ctx(t), key, change)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkTime(t, "IdleExpiry 10 minutes after a slide", got.IdleExpiry, recent.IdleExpiry)

	due := newRecord("user-1", nil)
	due.IdleExpiry = time.Now().Add(30 * time.Minute)
	key = insert(t, s, due)
	got, err = s.Apply(ctx(t), key, change)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkTime(t, "IdleExpiry 30 minutes after a slide", got.IdleExpiry, got.LoadedAt.Add(time.Hour))

	// A change that brings the absolute expiry before the idle expiry it
	// holds back still keeps the idle expiry within it.
	held := newRecord("user-1", nil)
	held.IdleExpiry = time.Now().Add(50 * time.Minute)
	key = insert(t, s, held)
	shorter := change
	shorter.Expiry = time.Now().Add(40 * time.Minute).Truncate(time.Millisecond)
	got, err = s.Apply(ctx(t), key, shorter)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkTime(t, "IdleExpiry held back past a shortened Expiry", got.IdleExpiry, shorter.Expiry)
}

// testApplyMaxSize: a change that would take the values over MaxSize is
// refused whole with ErrTooLarge, measured on the session as stored, not
// as the caller last saw it.
func testApplyMaxSize(t *testing.T, s session.Store) {
	big := `"` + strings.Repeat("x", 600) + `"`
	key := insert(t, s, newRecord("user-1", map[string]string{"first": big}))
	change := session.Change{Set: map[string]json.RawMessage{"second": json.RawMessage(big)}, UserID: ptr("someone"), MaxSize: 1000}
	if _, err := s.Apply(ctx(t), key, change); !errors.Is(err, session.ErrTooLarge) {
		t.Fatalf("Apply over MaxSize = %v; want ErrTooLarge", err)
	}
	got := load(t, s, key)
	checkValues(t, got.Values, newRecord("", map[string]string{"first": big}).Values)
	if got.UserID != "user-1" {
		t.Errorf("UserID = %q after a refused Apply; want it unchanged", got.UserID)
	}
	// Within the cap, and a change that only deletes, always pass.
	small := session.Change{Set: map[string]json.RawMessage{"small": json.RawMessage(`1`)}, MaxSize: 1000}
	if _, err := s.Apply(ctx(t), key, small); err != nil {
		t.Fatalf("Apply within MaxSize: %v", err)
	}
	if _, err := s.Apply(ctx(t), key, session.Change{Delete: []string{"small"}, MaxSize: 10}); err != nil {
		t.Fatalf("Apply that only deletes, over MaxSize: %v", err)
	}
	// Replacing a value counts the new one only.
	swap := session.Change{Set: map[string]json.RawMessage{"first": json.RawMessage(big)}, MaxSize: 1000}
	if _, err := s.Apply(ctx(t), key, swap); err != nil {
		t.Fatalf("Apply replacing a value within MaxSize: %v", err)
	}
	// Missing stays ErrNotFound whatever the size.
	if _, err := s.Apply(ctx(t), newKey(), change); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Apply to a missing key over MaxSize = %v; want ErrNotFound", err)
	}
}

func testRekeyMaxSize(t *testing.T, s session.Store) {
	big := `"` + strings.Repeat("x", 600) + `"`
	oldKey := insert(t, s, newRecord("user-1", map[string]string{"first": big}))
	newKey := newKey()
	change := session.Change{Set: map[string]json.RawMessage{"second": json.RawMessage(big)}, MaxSize: 1000}
	if _, err := s.Rekey(ctx(t), oldKey, newKey, change, newRecord("user-1", nil)); !errors.Is(err, session.ErrTooLarge) {
		t.Fatalf("Rekey over MaxSize = %v; want ErrTooLarge", err)
	}
	load(t, s, oldKey) // nothing moved
	wantNotFound(t, s, newKey)
}

func ptr[T any](v T) *T { return &v }

func testDelete(t *testing.T, s session.Store) {
	rec := newRecord("user-1", nil)
	key := insert(t, s, rec)
	other := insert(t, s, newRecord("user-1", nil))
	info, err := s.Destroy(ctx(t), key)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if info == nil {
		t.Fatal("Delete of a stored key returned no Info")
	}
	checkInfo(t, *info, key, rec)
	for _, k := range []string{key, newKey()} {
		if info, err := s.Destroy(ctx(t), k); err != nil || info != nil {
			t.Fatalf("Delete of a missing key = %+v, %v; want nil, nil", info, err)
		}
	}
	wantNotFound(t, s, key)
	load(t, s, other)
}

// checkInfo compares a summary with the record it summarises.
func checkInfo(t *testing.T, got session.Info, key string, rec *session.Record) {
	t.Helper()
	if got.Key != key {
		t.Errorf("Info.Key = %s; want %s", got.Key, key)
	}
	if got.UserID != rec.UserID || got.UserAgent != rec.UserAgent || got.IP != rec.IP {
		t.Errorf("Info = %q %q %q; want %q %q %q", got.UserID, got.UserAgent, got.IP, rec.UserID, rec.UserAgent, rec.IP)
	}
	checkTime(t, "Info.Created", got.Created, rec.Created)
	checkTime(t, "Info.LastSeen", got.LastSeen, rec.LastSeen)
	checkTime(t, "Info.Expiry", got.Expiry, rec.Expiry)
	checkTime(t, "Info.IdleExpiry", got.IdleExpiry, rec.IdleExpiry)
}

func testDestroyUser(t *testing.T, s session.Store) {
	users := s.(session.UserIndex)
	alice := []string{insert(t, s, newRecord("alice", nil)), insert(t, s, newRecord("alice", nil))}
	bob := insert(t, s, newRecord("bob", nil))
	anonymous := insert(t, s, newRecord("", nil))
	deleted, err := users.DestroyUser(ctx(t), "alice", "")
	if err != nil {
		t.Fatalf("DestroyUser: %v", err)
	}
	if len(deleted) != len(alice) {
		t.Errorf("DestroyUser deleted %d; want %d", len(deleted), len(alice))
	}
	for _, key := range alice {
		wantNotFound(t, s, key)
		if !slices.ContainsFunc(deleted, func(i session.Info) bool { return i.Key == key && i.UserID == "alice" }) {
			t.Errorf("DestroyUser did not report %s", key)
		}
	}
	load(t, s, bob)
	load(t, s, anonymous)
	if n, err := users.DestroyUser(ctx(t), "nobody", ""); err != nil || len(n) != 0 {
		t.Errorf("DestroyUser of a user with no sessions = %v, %v; want none", n, err)
	}
	if n, err := users.DestroyUser(ctx(t), "", ""); err != nil || len(n) != 0 {
		t.Errorf(`DestroyUser("") = %v, %v; want none: anonymous sessions are never revoked in bulk`, n, err)
	}
	load(t, s, anonymous)
}

// testDestroyUserKeeps is "sign out everywhere else".
func testDestroyUserKeeps(t *testing.T, s session.Store) {
	users := s.(session.UserIndex)
	current := insert(t, s, newRecord("alice", nil))
	others := []string{insert(t, s, newRecord("alice", nil)), insert(t, s, newRecord("alice", nil))}
	deleted, err := users.DestroyUser(ctx(t), "alice", current)
	if err != nil {
		t.Fatalf("DestroyUser: %v", err)
	}
	if len(deleted) != len(others) {
		t.Errorf("DestroyUser deleted %d; want %d", len(deleted), len(others))
	}
	load(t, s, current)
	for _, key := range others {
		wantNotFound(t, s, key)
	}
}

func testListUser(t *testing.T, s session.Store) {
	users := s.(session.UserIndex)
	base := time.Now().Round(0)
	var want []*session.Record
	var keys []string
	// Inserted out of order, to check that the store sorts.
	for i, age := range []time.Duration{2 * time.Hour, 0, time.Hour} {
		rec := newRecord("alice", map[string]string{"secret": `"not listed"`})
		rec.Created = base.Add(-age)
		rec.LastSeen = base.Add(-age / 2)
		rec.UserAgent = fmt.Sprintf("browser %d", i)
		keys = append(keys, insert(t, s, rec))
		want = append(want, rec)
	}
	expired := newRecord("alice", nil)
	expired.IdleExpiry = base.Add(-time.Minute)
	insert(t, s, expired)
	insert(t, s, newRecord("bob", nil))
	insert(t, s, newRecord("", nil))

	got, err := users.ListUser(ctx(t), "alice")
	if err != nil {
		t.Fatalf("ListUser: %v", err)
	}
	order := []int{1, 2, 0} // newest first
	if len(got) != len(order) {
		t.Fatalf("ListUser returned %d sessions; want %d: %+v", len(got), len(order), got)
	}
	for i, j := range order {
		checkInfo(t, got[i], keys[j], want[j])
		if got[i].Current {
			t.Errorf("ListUser[%d].Current is set; only the Manager knows the current session", i)
		}
	}
	if got, err := users.ListUser(ctx(t), "nobody"); err != nil || len(got) != 0 {
		t.Errorf("ListUser of a user with no sessions = %v, %v; want none", got, err)
	}
	if got, err := users.ListUser(ctx(t), ""); err != nil || len(got) != 0 {
		t.Errorf(`ListUser("") = %v, %v; want none: anonymous sessions are nobody's`, got, err)
	}
}

// testTrimUser keeps the most recently seen sessions of a user.
func testTrimUser(t *testing.T, s session.Store) {
	users := s.(session.UserIndex)
	base := time.Now().Round(0)
	var keys []string
	for _, seen := range []time.Duration{3 * time.Hour, time.Hour, 0, 2 * time.Hour} {
		rec := newRecord("alice", nil)
		rec.Created = base.Add(-4 * time.Hour)
		rec.LastSeen = base.Add(-seen)
		keys = append(keys, insert(t, s, rec))
	}
	bob := insert(t, s, newRecord("bob", nil))
	trimmed, err := users.TrimUser(ctx(t), "alice", 2)
	if err != nil {
		t.Fatalf("TrimUser: %v", err)
	}
	gone := []string{keys[0], keys[3]} // seen 3h and 2h ago
	if len(trimmed) != len(gone) {
		t.Fatalf("TrimUser removed %d sessions; want %d: %+v", len(trimmed), len(gone), trimmed)
	}
	for _, key := range gone {
		wantNotFound(t, s, key)
		if !slices.ContainsFunc(trimmed, func(i session.Info) bool { return i.Key == key }) {
			t.Errorf("TrimUser did not report %s", key)
		}
	}
	load(t, s, keys[1])
	load(t, s, keys[2])
	load(t, s, bob)
	if trimmed, err := users.TrimUser(ctx(t), "alice", 2); err != nil || len(trimmed) != 0 {
		t.Errorf("second TrimUser = %v, %v; want nothing to remove", trimmed, err)
	}
}

// testTrimUserConcurrent: sign-ins racing, each inserting its session and
// then trimming, never leave more than the limit.
func testTrimUserConcurrent(t *testing.T, s session.Store) {
	users := s.(session.UserIndex)
	const limit, signIns = 3, 12
	var wg sync.WaitGroup
	for range signIns {
		wg.Go(func() {
			rec := newRecord("carol", nil)
			key := newKey()
			if err := s.Insert(ctx(t), key, rec); err != nil {
				t.Errorf("Insert: %v", err)
				return
			}
			if _, err := users.TrimUser(ctx(t), "carol", limit); err != nil {
				t.Errorf("TrimUser: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := users.ListUser(ctx(t), "carol")
	if err != nil {
		t.Fatalf("ListUser: %v", err)
	}
	if len(got) > limit {
		t.Errorf("%d sessions left after %d concurrent sign-ins limited to %d", len(got), signIns, limit)
	}
}

func testPrune(t *testing.T, s session.Store) {
	pruner := s.(session.Pruner)
	hourAgo := time.Now().Add(-time.Hour)
	absolute := newRecord("alice", nil)
	absolute.Expiry, absolute.IdleExpiry = hourAgo, time.Time{}
	idle := newRecord("", nil)
	idle.IdleExpiry = hourAgo
	expiredKeys := []string{insert(t, s, absolute), insert(t, s, idle)}
	withIdle := insert(t, s, newRecord("alice", nil))
	noIdle := newRecord("", nil)
	noIdle.IdleExpiry = time.Time{}
	withoutIdle := insert(t, s, noIdle)

	pruned, err := pruner.Prune(ctx(t), 100)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if len(pruned) != 2 {
		t.Errorf("Prune = %d; want 2", len(pruned))
	}
	for _, key := range expiredKeys {
		if !slices.ContainsFunc(pruned, func(i session.Info) bool { return i.Key == key }) {
			t.Errorf("Prune did not report %s", key)
		}
	}
	load(t, s, withIdle)
	load(t, s, withoutIdle)
	if pruned, err := pruner.Prune(ctx(t), 100); err != nil || len(pruned) != 0 {
		t.Errorf("second Prune = %v, %v; want none", pruned, err)
	}
}

// testPruneLimit: each call deletes at most limit records, and repeated
// calls finish the job.
func testPruneLimit(t *testing.T, s session.Store) {
	pruner := s.(session.Pruner)
	for range 5 {
		rec := newRecord("", nil)
		rec.Expiry, rec.IdleExpiry = time.Now().Add(-time.Hour), time.Time{}
		insert(t, s, rec)
	}
	total := 0
	for calls := 1; ; calls++ {
		pruned, err := pruner.Prune(ctx(t), 2)
		if err != nil {
			t.Fatalf("Prune: %v", err)
		}
		if len(pruned) > 2 {
			t.Fatalf("Prune(limit 2) deleted %d", len(pruned))
		}
		total += len(pruned)
		if len(pruned) < 2 {
			break
		}
		if calls > 5 {
			t.Fatal("Prune never returned fewer than its limit")
		}
	}
	if total != 5 {
		t.Errorf("Prune deleted %d in all; want 5", total)
	}
}

func testNoAliasing(t *testing.T, s session.Store) {
	orig := map[string]string{"a": `1`}
	rec := newRecord("user-1", orig)
	key := insert(t, s, rec)
	rec.Values["a"] = json.RawMessage(`"changed after Insert"`)
	rec.Values["added"] = json.RawMessage(`1`)

	loaded := load(t, s, key)
	checkValues(t, loaded.Values, newRecord("", orig).Values)
	loaded.Values["a"] = json.RawMessage(`"changed after Load"`)
	loaded.Values["added"] = json.RawMessage(`2`)
	checkValues(t, load(t, s, key).Values, newRecord("", orig).Values)

	var kept *session.Record
	updated, err := s.Modify(ctx(t), key, func(r *session.Record) error {
		kept = r
		r.Values["b"] = json.RawMessage(`2`)
		return nil
	})
	if err != nil {
		t.Fatalf("Modify: %v", err)
	}
	kept.Values["a"] = json.RawMessage(`"changed by fn after Modify"`)
	updated.Values["a"] = json.RawMessage(`"changed after Modify"`)
	checkValues(t, load(t, s, key).Values, newRecord("", map[string]string{"a": `1`, "b": `2`}).Values)
}
