package session

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// memoryStore keeps sessions in this process's memory: the development
// default, which New uses unless Config selects another store. Sessions are
// lost on restart and cannot be shared between instances, which is why
// production refuses it unless SESSION_ALLOW_MEMORY_STORE=true. Expired
// sessions are invisible at once and freed by Prune. One lock guards every
// record; Modify holds it while fn runs.
type memoryStore struct {
	now     func() time.Time
	mu      sync.Mutex
	records map[string]*Record
}

func newMemoryStore(now func() time.Time) *memoryStore {
	return &memoryStore{now: now, records: map[string]*Record{}}
}

// live returns the record under key if it has not expired. Called with
// s.mu held.
func (s *memoryStore) live(key string, now time.Time) (*Record, bool) {
	rec, ok := s.records[key]
	if !ok || !now.Before(rec.deadline()) {
		return nil, false
	}
	return rec, true
}

// liveCopy returns a copy of the live record under key, with LoadedAt set
// to the store's clock, or ErrNotFound. Called with s.mu held.
func (s *memoryStore) liveCopy(key string) (*Record, error) {
	now := s.now()
	rec, ok := s.live(key, now)
	if !ok {
		return nil, ErrNotFound
	}
	out := clone(rec)
	out.LoadedAt = now
	return out, nil
}

func (s *memoryStore) Load(ctx context.Context, key string) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveCopy(key)
}

func (s *memoryStore) Insert(ctx context.Context, key string, rec *Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.records[key]; ok {
		return ErrConflict
	}
	s.records[key] = clone(rec)
	return nil
}

func (s *memoryStore) Apply(ctx context.Context, key string, change Change) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	rec, ok := s.live(key, now)
	if !ok {
		return nil, ErrNotFound
	}
	// In place: no stored record shares its Values map with a caller.
	if err := change.applyTo(rec, now); err != nil {
		return nil, err
	}
	out := *rec
	out.LoadedAt = now
	out.Values = nil // see Store.Apply
	return &out, nil
}

func (s *memoryStore) Rekey(ctx context.Context, oldKey, newKey string, change Change, fresh *Record) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.liveCopy(oldKey)
	if err != nil {
		return nil, err
	}
	if _, taken := s.records[newKey]; taken {
		return nil, ErrConflict
	}
	change.IdleTimeout = 0 // fresh brings the deadlines
	if err := change.applyTo(rec, rec.LoadedAt); err != nil {
		return nil, err
	}
	rec.renewFrom(fresh)
	delete(s.records, oldKey)
	s.records[newKey] = rec
	return clone(rec), nil
}

func (s *memoryStore) Modify(ctx context.Context, key string, fn func(*Record) error) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.liveCopy(key)
	if err != nil {
		return nil, err
	}
	if err := fn(rec); err != nil {
		return nil, err
	}
	rec.LastSeen = rec.LoadedAt
	s.records[key] = clone(rec)
	return rec, nil
}

func (s *memoryStore) Destroy(ctx context.Context, key string) (*Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.records[key]
	if !ok {
		return nil, nil
	}
	delete(s.records, key)
	info := rec.info(key)
	return &info, nil
}

func (s *memoryStore) ListUser(ctx context.Context, userID string) ([]Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	infos := s.userInfos(userID)
	slices.SortFunc(infos, func(a, b Info) int { return b.Created.Compare(a.Created) })
	return infos, nil
}

// userInfos summarises userID's live records, in no order. Called with
// s.mu held.
func (s *memoryStore) userInfos(userID string) []Info {
	if userID == "" {
		return nil // see UserIndex
	}
	now := s.now()
	var infos []Info
	for key := range s.records {
		if rec, ok := s.live(key, now); ok && rec.UserID == userID {
			infos = append(infos, rec.info(key))
		}
	}
	return infos
}

func (s *memoryStore) DestroyUser(ctx context.Context, userID, keep string) ([]Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var deleted []Info
	for key, rec := range s.records {
		if userID != "" && rec.UserID == userID && key != keep {
			deleted = append(deleted, rec.info(key))
			delete(s.records, key)
		}
	}
	return deleted, nil
}

func (s *memoryStore) TrimUser(ctx context.Context, userID string, max int) ([]Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	infos := s.userInfos(userID)
	if len(infos) <= max {
		return nil, nil
	}
	slices.SortFunc(infos, byRecency)
	for _, info := range infos[max:] {
		delete(s.records, info.Key)
	}
	return infos[max:], nil
}

// byRecency orders the most recently seen first, as TrimUser keeps them,
// ties broken by key so that concurrent trims agree on what to keep.
func byRecency(a, b Info) int {
	if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
		return c
	}
	if c := b.Created.Compare(a.Created); c != 0 {
		return c
	}
	return strings.Compare(a.Key, b.Key)
}

func (s *memoryStore) Prune(ctx context.Context, limit int) ([]Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var pruned []Info
	for key, rec := range s.records {
		if len(pruned) == limit {
			break
		}
		if _, ok := s.live(key, now); !ok {
			pruned = append(pruned, rec.info(key))
			delete(s.records, key)
		}
	}
	return pruned, nil
}

// countLive counts the live records, for an Observer.
func (s *memoryStore) countLive(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var n int64
	for key := range s.records {
		if _, ok := s.live(key, now); ok {
			n++
		}
	}
	return n, nil
}
