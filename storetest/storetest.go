// Package storetest checks that a session.Store honours the contract written
// beside the interface. Every Store in this module passes it, and so should
// any other:
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
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
)

// Run checks every point of the Store contract in parallel subtests. Each
// subtest calls newStore for a store of its own, which must start empty and
// share nothing with the others; newStore registers any cleanup on the t it
// is given.
//
// Times are compared to the microsecond, PostgreSQL's resolution, and JSON
// values by meaning, since a store may re-encode them. Expired records are
// made with deadlines an hour in the past, so no test waits.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, newStore(t))
		})
	}
}

var cases = []struct {
	name string
	test func(t *testing.T, s session.Store)
}{
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
	{"Update", testUpdate},
	{"UpdateErrorStoresNothing", testUpdateError},
	{"UpdateMissing", testUpdateMissing},
	{"UpdateConcurrent", testUpdateConcurrent},
	{"Touch", testTouch},
	{"TouchMissing", testTouchMissing},
	{"DeleteIsIdempotent", testDelete},
	{"DeleteUser", testDeleteUser},
	{"ListUser", testListUser},
	{"Prune", testPrune},
	{"NoAliasing", testNoAliasing},
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

// checkRecord compares everything a store keeps except Version and LoadedAt.
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
	rec.Version = 7 // ignored: Insert always stores version 1
	key := insert(t, s, rec)
	if rec.Version != 1 {
		t.Errorf("after Insert rec.Version = %d; want 1", rec.Version)
	}
	got := load(t, s, key)
	checkRecord(t, got, rec)
	if got.Version != 1 {
		t.Errorf("Version = %d; want 1", got.Version)
	}
	checkLoadedAt(t, got)
}

func testInsertAnonymous(t *testing.T, s session.Store) {
	rec := newRecord("", nil)
	rec.Values = nil
	rec.IdleExpiry = time.Time{}
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
	got := load(t, s, key)
	checkRecord(t, got, first)
	if got.Version != 1 {
		t.Errorf("Version = %d; want 1", got.Version)
	}
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
			called := false
			if _, err := s.Update(ctx(t), key, func(*session.Record) error { called = true; return nil }); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Update = %v; want ErrNotFound", err)
			}
			if called {
				t.Error("Update called fn on an expired record")
			}
			if err := s.Touch(ctx(t), key, time.Now().Add(time.Hour)); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Touch = %v; want ErrNotFound", err)
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
	if got.Version != 2 {
		t.Errorf("Apply returned Version %d; want 2", got.Version)
	}
	loaded := load(t, s, key)
	checkRecord(t, loaded, want)
	if loaded.Version != 2 {
		t.Errorf("Version = %d; want 2", loaded.Version)
	}

	// Clear comes first, then Set; a nil UserID and Persistent change
	// neither, and no IdleTimeout leaves the idle expiry alone.
	got, err = s.Apply(ctx(t), key, session.Change{Clear: true, Set: map[string]json.RawMessage{"e": json.RawMessage(`5`)}})
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	want.Values = map[string]json.RawMessage{"e": json.RawMessage(`5`)}
	checkApplied(t, got, want)
	if got.Version != 3 {
		t.Errorf("second Apply returned Version %d; want 3", got.Version)
	}
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
	if got.Version != writers+1 {
		t.Errorf("Version = %d; want %d", got.Version, writers+1)
	}
}

func testApplyDeleted(t *testing.T, s session.Store) {
	key := insert(t, s, newRecord("user-1", map[string]string{"a": `1`}))
	if err := s.Delete(ctx(t), key); err != nil {
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
	oldKey := insert(t, s, orig)
	fresh := newRecord("", nil)
	fresh.Created = fresh.Created.Add(time.Minute)
	fresh.Expiry = fresh.Expiry.Add(time.Hour)
	fresh.IdleExpiry = fresh.IdleExpiry.Add(time.Minute)
	user := "user-2"
	newKey := newKey()
	got, err := s.Rekey(ctx(t), oldKey, newKey, session.Change{Delete: []string{"b"}, Set: map[string]json.RawMessage{"c": json.RawMessage(`3`)}, UserID: &user}, fresh)
	if err != nil {
		t.Fatalf("Rekey: %v", err)
	}
	want := newRecord("user-2", map[string]string{"a": `1`, "c": `3`})
	want.Created, want.Expiry, want.IdleExpiry = fresh.Created, fresh.Expiry, fresh.IdleExpiry
	checkRecord(t, got, want)
	checkLoadedAt(t, got)
	if got.Version != 1 {
		t.Errorf("Rekey returned Version %d; want 1", got.Version)
	}
	checkRecord(t, load(t, s, newKey), want)
	wantNotFound(t, s, oldKey)
}

func testRekeyMissing(t *testing.T, s session.Store) {
	oldKey := insert(t, s, newRecord("user-1", map[string]string{"a": `1`}))
	if err := s.Delete(ctx(t), oldKey); err != nil {
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

func testUpdate(t *testing.T, s session.Store) {
	orig := newRecord("user-1", map[string]string{"a": `1`})
	key := insert(t, s, orig)
	got, err := s.Update(ctx(t), key, func(r *session.Record) error {
		if r.Version != 1 {
			t.Errorf("fn saw Version %d; want 1", r.Version)
		}
		checkRecord(t, r, orig)
		r.Values["b"] = json.RawMessage(`[1,2]`)
		r.UserID = "user-2"
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	want := newRecord("user-2", map[string]string{"a": `1`, "b": `[1,2]`})
	want.Created, want.Expiry, want.IdleExpiry = orig.Created, orig.Expiry, orig.IdleExpiry
	checkRecord(t, got, want)
	if got.Version != 2 {
		t.Errorf("Update returned Version %d; want 2", got.Version)
	}
	checkLoadedAt(t, got)
	loaded := load(t, s, key)
	checkRecord(t, loaded, want)
	if loaded.Version != 2 {
		t.Errorf("Version = %d; want 2", loaded.Version)
	}
}

func testUpdateError(t *testing.T, s session.Store) {
	orig := newRecord("user-1", map[string]string{"a": `1`})
	key := insert(t, s, orig)
	boom := errors.New("boom")
	_, err := s.Update(ctx(t), key, func(r *session.Record) error {
		r.Values["a"] = json.RawMessage(`2`)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v; want fn's error", err)
	}
	got := load(t, s, key)
	checkRecord(t, got, orig)
	if got.Version != 1 {
		t.Errorf("Version = %d; want 1", got.Version)
	}
}

func testUpdateMissing(t *testing.T, s session.Store) {
	called := false
	_, err := s.Update(ctx(t), newKey(), func(*session.Record) error { called = true; return nil })
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Update = %v; want ErrNotFound", err)
	}
	if called {
		t.Error("Update called fn for a missing record")
	}
}

func testUpdateConcurrent(t *testing.T, s session.Store) {
	const writers = 16
	key := insert(t, s, newRecord("user-1", map[string]string{"n": `0`}))
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			_, err := s.Update(ctx(t), key, func(r *session.Record) error {
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
			t.Errorf("Update: %v", err)
		}
	}
	got := load(t, s, key)
	checkValues(t, got.Values, map[string]json.RawMessage{"n": json.RawMessage(`16`)})
	if got.Version != writers+1 {
		t.Errorf("Version = %d; want %d", got.Version, writers+1)
	}
}

func testTouch(t *testing.T, s session.Store) {
	orig := newRecord("user-1", map[string]string{"a": `1`})
	key := insert(t, s, orig)
	later := orig.IdleExpiry.Add(30 * time.Minute)
	if err := s.Touch(ctx(t), key, later); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	got := load(t, s, key)
	want := *orig
	want.IdleExpiry = later
	checkRecord(t, got, &want)
	if got.Version != 1 {
		t.Errorf("Version = %d after Touch; want 1", got.Version)
	}
}

func testTouchMissing(t *testing.T, s session.Store) {
	if err := s.Touch(ctx(t), newKey(), time.Now().Add(time.Hour)); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Touch = %v; want ErrNotFound", err)
	}
}

func testDelete(t *testing.T, s session.Store) {
	key := insert(t, s, newRecord("user-1", nil))
	other := insert(t, s, newRecord("user-1", nil))
	for i := range 2 {
		if err := s.Delete(ctx(t), key); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := s.Delete(ctx(t), newKey()); err != nil {
		t.Fatalf("Delete of a key never stored: %v", err)
	}
	wantNotFound(t, s, key)
	load(t, s, other)
}

func testDeleteUser(t *testing.T, s session.Store) {
	alice := []string{insert(t, s, newRecord("alice", nil)), insert(t, s, newRecord("alice", nil))}
	bob := insert(t, s, newRecord("bob", nil))
	anonymous := insert(t, s, newRecord("", nil))
	n, err := s.DeleteUser(ctx(t), "alice")
	if err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if n != len(alice) {
		t.Errorf("DeleteUser = %d; want %d", n, len(alice))
	}
	for _, key := range alice {
		wantNotFound(t, s, key)
	}
	load(t, s, bob)
	load(t, s, anonymous)
	if n, err := s.DeleteUser(ctx(t), "nobody"); err != nil || n != 0 {
		t.Errorf("DeleteUser of a user with no sessions = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.DeleteUser(ctx(t), ""); err != nil || n != 0 {
		t.Errorf(`DeleteUser("") = %d, %v; want 0, nil: anonymous sessions are never revoked in bulk`, n, err)
	}
	load(t, s, anonymous)
}

func testListUser(t *testing.T, s session.Store) {
	base := time.Now().Round(0)
	var want []*session.Record
	var keys []string
	// Inserted out of order, to check that the store sorts.
	for _, age := range []time.Duration{2 * time.Hour, 0, time.Hour} {
		rec := newRecord("alice", map[string]string{"secret": `"not listed"`})
		rec.Created = base.Add(-age)
		keys = append(keys, insert(t, s, rec))
		want = append(want, rec)
	}
	expired := newRecord("alice", nil)
	expired.IdleExpiry = base.Add(-time.Minute)
	insert(t, s, expired)
	insert(t, s, newRecord("bob", nil))
	insert(t, s, newRecord("", nil))

	got, err := s.ListUser(ctx(t), "alice")
	if err != nil {
		t.Fatalf("ListUser: %v", err)
	}
	order := []int{1, 2, 0} // newest first
	if len(got) != len(order) {
		t.Fatalf("ListUser returned %d sessions; want %d: %+v", len(got), len(order), got)
	}
	for i, j := range order {
		g, w := got[i], want[j]
		if g.Key != keys[j] {
			t.Errorf("ListUser[%d].Key = %s; want %s", i, g.Key, keys[j])
		}
		if g.UserID != "alice" {
			t.Errorf("ListUser[%d].UserID = %q; want alice", i, g.UserID)
		}
		checkTime(t, "Created", g.Created, w.Created)
		checkTime(t, "Expiry", g.Expiry, w.Expiry)
		checkTime(t, "IdleExpiry", g.IdleExpiry, w.IdleExpiry)
	}
	if got, err := s.ListUser(ctx(t), "nobody"); err != nil || len(got) != 0 {
		t.Errorf("ListUser of a user with no sessions = %v, %v; want none", got, err)
	}
	if got, err := s.ListUser(ctx(t), ""); err != nil || len(got) != 0 {
		t.Errorf(`ListUser("") = %v, %v; want none: anonymous sessions are nobody's`, got, err)
	}
}

func testPrune(t *testing.T, s session.Store) {
	hourAgo := time.Now().Add(-time.Hour)
	absolute := newRecord("alice", nil)
	absolute.Expiry, absolute.IdleExpiry = hourAgo, time.Time{}
	idle := newRecord("", nil)
	idle.IdleExpiry = hourAgo
	insert(t, s, absolute)
	insert(t, s, idle)
	withIdle := insert(t, s, newRecord("alice", nil))
	noIdle := newRecord("", nil)
	noIdle.IdleExpiry = time.Time{}
	withoutIdle := insert(t, s, noIdle)

	n, err := s.Prune(ctx(t))
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if n != 2 {
		t.Errorf("Prune = %d; want 2", n)
	}
	load(t, s, withIdle)
	load(t, s, withoutIdle)
	if n, err := s.Prune(ctx(t)); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want 0, nil", n, err)
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
	updated, err := s.Update(ctx(t), key, func(r *session.Record) error {
		kept = r
		r.Values["b"] = json.RawMessage(`2`)
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	kept.Values["a"] = json.RawMessage(`"changed by fn after Update"`)
	updated.Values["a"] = json.RawMessage(`"changed after Update"`)
	checkValues(t, load(t, s, key).Values, newRecord("", map[string]string{"a": `1`, "b": `2`}).Values)
}
