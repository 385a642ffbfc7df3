package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) session.Store { return session.NewMemoryStoreOnClock(time.Now) })
}

// TestMinimalStoreConformance runs the suite against minimalStore, a store
// written from store.go's documentation alone, implementing the required
// interface and nothing optional: the contract is enough to build on.
func TestMinimalStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) session.Store { return newMinimalStore() })
}

// TestManagerOnMinimalStore: the Manager serves sessions on a store with
// only the core contract, and what needs an optional interface says so.
func TestManagerOnMinimalStore(t *testing.T) {
	t.Parallel()
	store := newMinimalStore()
	m, err := session.New(t.Context(), session.Config{Production: true, Secret: goodSecret}, session.WithStore(store), session.WithLogger(discardLogger))
	if err != nil {
		t.Fatalf("New in production with a custom store: %v", err)
	}
	t.Cleanup(m.Close)
	if _, err := m.RevokeUser(t.Context(), "ada"); !errors.Is(err, session.ErrNotSupported) {
		t.Errorf("RevokeUser on a store without a UserIndex = %v; want ErrNotSupported", err)
	}
	if _, err := m.UserSessions(t.Context(), "ada"); !errors.Is(err, session.ErrNotSupported) {
		t.Errorf("UserSessions on a store without a UserIndex = %v; want ErrNotSupported", err)
	}
	ts := startServer(t, serverSetup{store: newSpyStore(store)}, appHandler())
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/login?user=ada")
	fetchOK(t, c, ts.URL+"/set?color=blue")
	if _, got := fetchOK(t, c, ts.URL+"/get?key=color"); got != "blue" {
		t.Errorf("color = %q on the minimal store; want blue", got)
	}
	if _, got := fetchOK(t, c, ts.URL+"/whoami"); got != "ada" {
		t.Errorf("user = %q on the minimal store; want ada", got)
	}
}

// minimalStore is the smallest honest Store: records in a map under one
// lock, expiry judged by time.Now.
type minimalStore struct {
	mu      sync.Mutex
	records map[string]session.Record
}

func newMinimalStore() *minimalStore {
	return &minimalStore{records: map[string]session.Record{}}
}

// live returns a copy of the live record under key. Called with mu held.
func (s *minimalStore) live(key string) (session.Record, bool) {
	rec, ok := s.records[key]
	now := time.Now()
	if !ok || !now.Before(rec.Expiry) || (!rec.IdleExpiry.IsZero() && !now.Before(rec.IdleExpiry)) {
		return session.Record{}, false
	}
	rec.Values = maps.Clone(rec.Values)
	if rec.Values == nil {
		rec.Values = map[string]json.RawMessage{}
	}
	rec.LoadedAt = now
	return rec, true
}

func (s *minimalStore) Load(ctx context.Context, key string) (*session.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.live(key)
	if !ok {
		return nil, session.ErrNotFound
	}
	return &rec, nil
}

func (s *minimalStore) Insert(ctx context.Context, key string, rec *session.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.records[key]; ok {
		return session.ErrConflict
	}
	stored := *rec
	stored.Values = maps.Clone(rec.Values)
	s.records[key] = stored
	return nil
}

// change applies c to rec as store.go describes Apply.
func change(rec *session.Record, c session.Change, slide bool) error {
	values := maps.Clone(rec.Values)
	if c.Clear {
		clear(values)
	}
	for _, k := range c.Delete {
		delete(values, k)
	}
	maps.Copy(values, c.Set)
	if len(c.Set) > 0 && c.MaxSize > 0 {
		encoded, err := json.Marshal(values)
		if err != nil {
			return err
		}
		if len(encoded) > c.MaxSize {
			return session.ErrTooLarge
		}
	}
	rec.Values = values
	if c.UserID != nil {
		rec.UserID = *c.UserID
	}
	if c.Persistent != nil {
		rec.Persistent = *c.Persistent
	}
	if !c.Expiry.IsZero() {
		rec.Expiry = c.Expiry
	}
	if c.SessionIdleTimeout != nil {
		rec.IdleTimeout = *c.SessionIdleTimeout
	}
	idle := rec.IdleTimeout
	if idle == 0 {
		idle = c.IdleTimeout
	}
	if to := rec.LoadedAt.Add(idle); slide && idle > 0 &&
		(rec.IdleExpiry.IsZero() || rec.IdleExpiry.After(to) || to.Sub(rec.IdleExpiry) >= c.TouchInterval) {
		rec.IdleExpiry = to
	}
	if !rec.IdleExpiry.IsZero() && rec.IdleExpiry.After(rec.Expiry) {
		rec.IdleExpiry = rec.Expiry
	}
	rec.LastSeen = rec.LoadedAt
	return nil
}

func (s *minimalStore) Apply(ctx context.Context, key string, c session.Change) (*session.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.live(key)
	if !ok {
		return nil, session.ErrNotFound
	}
	if err := change(&rec, c, true); err != nil {
		return nil, err
	}
	s.records[key] = rec
	rec.Values = nil
	return &rec, nil
}

func (s *minimalStore) Rekey(ctx context.Context, oldKey, newKey string, c session.Change, fresh *session.Record) (*session.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.live(oldKey)
	if !ok {
		return nil, session.ErrNotFound
	}
	if _, taken := s.records[newKey]; taken {
		return nil, session.ErrConflict
	}
	if err := change(&rec, c, false); err != nil {
		return nil, err
	}
	rec.Created, rec.UserAgent, rec.IP = fresh.Created, fresh.UserAgent, fresh.IP
	if !fresh.Expiry.IsZero() {
		rec.Expiry = fresh.Expiry
	}
	rec.IdleExpiry = fresh.IdleExpiry
	if !rec.IdleExpiry.IsZero() && rec.IdleExpiry.After(rec.Expiry) {
		rec.IdleExpiry = rec.Expiry
	}
	delete(s.records, oldKey)
	s.records[newKey] = rec
	out := rec
	out.Values = maps.Clone(rec.Values)
	return &out, nil
}

func (s *minimalStore) Modify(ctx context.Context, key string, fn func(*session.Record) error) (*session.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.live(key)
	if !ok {
		return nil, session.ErrNotFound
	}
	if err := fn(&rec); err != nil {
		return nil, err
	}
	rec.LastSeen = rec.LoadedAt
	stored := rec
	stored.Values = maps.Clone(rec.Values)
	s.records[key] = stored
	return &rec, nil
}

func (s *minimalStore) Destroy(ctx context.Context, key string) (*session.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.records[key]
	if !ok {
		return nil, nil
	}
	delete(s.records, key)
	return &session.Info{Key: key, UserID: rec.UserID, Created: rec.Created, LastSeen: rec.LastSeen, Expiry: rec.Expiry,
		IdleExpiry: rec.IdleExpiry, UserAgent: rec.UserAgent, IP: rec.IP}, nil
}
