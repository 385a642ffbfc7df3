package session

import (
	"context"
	"slices"
	"sync"
	"time"
)

// MemoryStore keeps sessions in this process's memory: the development
// default. Sessions are lost on restart and cannot be shared between
// instances, which is why production refuses it unless
// SESSION_ALLOW_MEMORY_STORE=true. Expired sessions are invisible at once
// and freed by Prune, which the Manager calls periodically. It honours the
// Store contract and is safe for concurrent use.
type MemoryStore struct {
	now     func() time.Time
	mu      sync.Mutex
	records map[string]*Record
}

// NewMemoryStore returns an empty MemoryStore on the system clock.
func NewMemoryStore() *MemoryStore {
	return newMemoryStore(time.Now)
}

func newMemoryStore(now func() time.Time) *MemoryStore {
	return &MemoryStore{now: now, records: map[string]*Record{}}
}

// live returns the record under key if it has not expired. Called with
// s.mu held.
func (s *MemoryStore) live(key string, now time.Time) (*Record, bool) {
	rec, ok := s.records[key]
	if !ok || !now.Before(rec.Deadline()) {
		return nil, false
	}
	return rec, true
}

// liveCopy returns a copy of the live record under key with LoadedAt set
// to the store's clock, or ErrNotFound. Called with s.mu held.
func (s *MemoryStore) liveCopy(key string) (*Record, error) {
	now := s.now()
	rec, ok := s.live(key, now)
	if !ok {
		return nil, ErrNotFound
	}
	out := rec.Clone()
	out.LoadedAt = now
	return out, nil
}

// Load implements Store.
func (s *MemoryStore) Load(ctx context.Context, key string) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveCopy(key)
}

// Insert implements Store.
func (s *MemoryStore) Insert(ctx context.Context, key string, rec *Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.records[key]; ok {
		return ErrConflict
	}
	rec.Version = 1
	s.records[key] = rec.Clone()
	return nil
}

// Apply implements Store.
func (s *MemoryStore) Apply(ctx context.Context, key string, change Change) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	rec, ok := s.live(key, now)
	if !ok {
		return nil, ErrNotFound
	}
	// In place: no stored record shares its Values map with a caller
	// (every one handed out or taken in is a Clone).
	change.ApplyTo(rec, now)
	rec.Version++
	out := *rec
	out.LoadedAt = now
	out.Values = nil // see Store.Apply
	return &out, nil
}

// Rekey implements Store.
func (s *MemoryStore) Rekey(ctx context.Context, oldKey, newKey string, change Change, fresh *Record) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.liveCopy(oldKey)
	if err != nil {
		return nil, err
	}
	if _, taken := s.records[newKey]; taken {
		return nil, ErrConflict
	}
	change.IdleTimeout = 0 // fresh sets the deadlines
	change.ApplyTo(rec, rec.LoadedAt)
	rec.Created, rec.Expiry, rec.IdleExpiry, rec.Version = fresh.Created, fresh.Expiry, fresh.IdleExpiry, 1
	delete(s.records, oldKey)
	s.records[newKey] = rec
	return rec.Clone(), nil
}

// Update implements Store. The store's lock is held while fn runs.
func (s *MemoryStore) Update(ctx context.Context, key string, fn func(*Record) error) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.liveCopy(key)
	if err != nil {
		return nil, err
	}
	version := rec.Version // whatever fn does to it, as in PostgreSQL
	if err := fn(rec); err != nil {
		return nil, err
	}
	rec.Version = version + 1
	s.records[key] = rec.Clone()
	return rec, nil
}

// Touch implements Store.
func (s *MemoryStore) Touch(ctx context.Context, key string, idleExpiry time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.live(key, s.now())
	if !ok {
		return ErrNotFound
	}
	rec.IdleExpiry = idleExpiry
	return nil
}

// Delete implements Store.
func (s *MemoryStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, key)
	return nil
}

// DeleteUser implements Store.
func (s *MemoryStore) DeleteUser(ctx context.Context, userID string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for key, rec := range s.records {
		if userID != "" && rec.UserID == userID {
			delete(s.records, key)
			n++
		}
	}
	return n, nil
}

// ListUser implements Store.
func (s *MemoryStore) ListUser(ctx context.Context, userID string) ([]Info, error) {
	if userID == "" {
		return nil, nil // see Store.ListUser
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var infos []Info
	for key := range s.records {
		if rec, ok := s.live(key, now); ok && rec.UserID == userID {
			infos = append(infos, Info{Key: key, UserID: rec.UserID, Created: rec.Created, Expiry: rec.Expiry, IdleExpiry: rec.IdleExpiry})
		}
	}
	slices.SortFunc(infos, func(a, b Info) int { return b.Created.Compare(a.Created) })
	return infos, nil
}

// Prune implements Store.
func (s *MemoryStore) Prune(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for key := range s.records {
		if _, ok := s.live(key, now); !ok {
			delete(s.records, key)
			n++
		}
	}
	return n, nil
}

// Len returns how many records the store holds, expired ones included
// until Prune frees them.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.records)
}
