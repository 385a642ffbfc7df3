package session

import (
	"context"
	"time"

	"github.com/smartscheduler/session/migrations"
)

// Hooks for the external tests into what the package keeps unexported.

// PostgresStore and RedisStore are the types NewPostgresStore and
// NewRedisStore return, for tests that call UserIndex and Pruner directly.
type (
	PostgresStore = postgresStore
	RedisStore    = redisStore
)

// NewMemoryStoreOnClock is the memory store New makes, on the given clock.
func NewMemoryStoreOnClock(now func() time.Time) Store { return newMemoryStore(now) }

// MemoryRecords counts the records a memory store holds, expired ones
// included until Prune frees them.
func MemoryRecords(s Store) int {
	m := s.(*memoryStore)
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

// CurrentKey returns the store key of the session s belongs to, reading it
// first, or "" when there is none.
func CurrentKey(s *Session) string {
	s.lock()
	defer s.mu.Unlock()
	if s.read(s.ctx) != nil {
		return ""
	}
	return s.key
}

// PostgresTable returns the store's table, its schema resolved.
func PostgresTable(s *PostgresStore) migrations.Table { return s.table }

// SecretOf returns the secret m signs cookies with.
func SecretOf(m *Manager) string { return m.cfg.Secret }

// OpenPostgresStore is the store New opens from Config, with a pool of
// its own that close closes.
func OpenPostgresStore(ctx context.Context, databaseURL string, opts PostgresOptions, connectTimeout time.Duration) (s *PostgresStore, close func(), err error) {
	s, pool, err := openPostgresStore(ctx, databaseURL, opts, connectTimeout)
	if err != nil {
		return nil, nil, err
	}
	return s, pool.Close, nil
}
