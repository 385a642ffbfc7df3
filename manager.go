package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/smartscheduler/session/internal/prune"
)

// Manager loads and saves sessions around each request it wraps. Build one
// with New at start-up, wrap handlers with Handler, and Close it at
// shutdown. A Manager is safe for concurrent use.
type Manager struct {
	backend
	closeStore   func() // set when New opened the store, so Close closes it
	codec        *cookieCodec
	cookies      cookieTemplate
	errorHandler func(http.ResponseWriter, *http.Request, error)
	foreign      foreignCookies
	plainHTTP    sync.Map // hosts warned of a Secure cookie sent over plain HTTP
	// expressCookie reads and clears express-session's cookie; nil unless
	// Config.ExpressTable is set (see express_import.go).
	expressCookie *expressCookie

	stopPruning context.CancelFunc
	pruning     sync.WaitGroup
	closeOnce   sync.Once
}

// Option adjusts a Manager beyond what Config holds.
type Option func(*Manager)

// WithStore makes the Manager use store instead of the one Config selects;
// Config's store settings (UsePostgres, DatabaseURL, AllowMemoryStore) are
// then not checked. The caller keeps ownership: Manager.Close does not close
// it.
func WithStore(store Store) Option {
	return func(m *Manager) { m.store = store }
}

// WithLogger sets the logger. The default is slog.Default().
func WithLogger(logger *slog.Logger) Option {
	return func(m *Manager) { m.logger = logger }
}

// WithErrorHandler sets what answers a request whose session could not be
// loaded or saved before its headers left. The default is
// DefaultErrorHandler.
func WithErrorHandler(h func(http.ResponseWriter, *http.Request, error)) Option {
	return func(m *Manager) { m.errorHandler = h }
}

// WithClock replaces time.Now for new sessions' deadlines, cookie expiry and
// the memory store, so tests can move time without sleeping.
func WithClock(now func() time.Time) Option {
	return func(m *Manager) { m.now = now }
}

// New validates cfg, applies its defaults and builds a Manager. Unless
// WithStore supplies one, it opens the store Config selects: PostgreSQL
// (connecting, verifying and migrating within cfg.StoreTimeout), Redis
// (connecting within cfg.StoreTimeout) or memory.
// Every configuration problem is reported at once.
func New(ctx context.Context, cfg Config, opts ...Option) (*Manager, error) {
	m := &Manager{}
	m.logger, m.now, m.errorHandler = slog.Default(), time.Now, DefaultErrorHandler
	for _, opt := range opts {
		opt(m)
	}
	if err := cfg.validate(m.store != nil); err != nil {
		return nil, fmt.Errorf("session: invalid configuration:\n%w", err)
	}
	m.cfg = cfg.withDefaults()
	if m.cfg.Secret == "" {
		m.cfg.Secret = newToken() // 256 random bits, as a session token has
		m.logger.Warn("session: SESSION_SECRET is not set; using a random secret, so sessions will not survive a restart (run `sessionctl secret` to make one)")
	}
	codec, err := newCookieCodec(m.cfg.CookieName, m.cfg.Lifetime, m.cfg.Secret, m.cfg.PreviousSecrets, m.now)
	if err != nil {
		return nil, err
	}
	m.codec = codec
	m.cookies = newCookieTemplate(m.cfg.CookieName, m.cfg.CookieDomain, m.cfg.Production, m.cfg.SameSite)
	if m.store == nil {
		if err := m.openStore(ctx); err != nil {
			return nil, err
		}
	}
	if err := m.setUpExpressImport(ctx); err != nil {
		if m.closeStore != nil {
			m.closeStore()
		}
		return nil, err
	}
	m.users, _ = m.store.(UserIndex)
	pruner, _ := m.store.(Pruner)
	if m.observer != nil {
		if c, ok := m.store.(counter); ok {
			m.observer.LiveSessions(c.countLive)
		}
		observed := observedStore{Store: m.store, o: m.observer}
		m.store = observed
		if m.users != nil {
			m.users = observed
		}
		if pruner != nil {
			pruner = observed
		}
	}
	if m.events != nil {
		m.events.logger = m.logger
		m.events.start()
	}
	pruneCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stopPruning = stop
	if pruner != nil {
		m.pruning.Go(func() { m.pruneLoop(pruneCtx, pruner) })
	}
	return m, nil
}

// openStore opens the store the configuration selects.
func (m *Manager) openStore(ctx context.Context) error {
	if m.cfg.UseRedis {
		return m.openRedisStore(ctx)
	}
	if !m.cfg.UsePostgres {
		m.store = newMemoryStore(m.now)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	pg, pool, err := openPostgresStore(ctx, m.cfg.DatabaseURL, PostgresOptions{
		Table:            m.cfg.Table,
		ManualMigrations: m.cfg.ManualMigrations,
	}, m.cfg.StoreTimeout)
	if err != nil {
		return err
	}
	m.store, m.closeStore = pg, pool.Close
	return nil
}

// openRedisStore connects to RedisURL within StoreTimeout.
func (m *Manager) openRedisStore(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	store, closeClient, err := openRedisStore(ctx, m.cfg.RedisURL, m.cfg.RedisCluster, m.cfg.StoreTimeout)
	if err != nil {
		return err
	}
	// A close error at shutdown has nowhere to go.
	m.store, m.closeStore = store, func() { _ = closeClient() }
	return nil
}

// Close stops background pruning and closes the store if New opened it.
// Requests still in flight should be drained first (http.Server.Shutdown).
func (m *Manager) Close() {
	m.closeOnce.Do(func() {
		m.stopPruning()
		m.pruning.Wait()
		if m.events != nil {
			m.events.stop()
		}
		if m.closeStore != nil {
			m.closeStore()
		}
	})
}

// RevokeUser ends every session of userID at once, on every instance
// sharing the store ("sign out everywhere"), and returns how many ended. It
// returns ErrNotSupported when the store has no UserIndex.
func (m *Manager) RevokeUser(ctx context.Context, userID string) (int, error) {
	if m.users == nil {
		return 0, fmt.Errorf("session: revoking sessions of a user: %w", ErrNotSupported)
	}
	ctx, cancel := m.bound(ctx)
	defer cancel()
	ended, err := m.users.DestroyUser(ctx, userID, "")
	if err != nil {
		return 0, fmt.Errorf("session: revoking sessions of a user: %w", err)
	}
	m.emit("revoked", ended...)
	return len(ended), nil
}

// RevokeSession ends the session stored under key (see Info.Key).
func (m *Manager) RevokeSession(ctx context.Context, key string) error {
	ctx, cancel := m.bound(ctx)
	defer cancel()
	info, err := m.store.Destroy(ctx, key)
	if err != nil {
		return fmt.Errorf("session: revoking a session: %w", err)
	}
	if info != nil {
		m.emit("revoked", *info)
	}
	return nil
}

// UserSessions lists userID's live sessions, newest first, for a "your
// devices" page. Given a request's context, it marks that request's own
// session Current. It returns ErrNotSupported when the store has no
// UserIndex.
func (m *Manager) UserSessions(ctx context.Context, userID string) ([]Info, error) {
	if m.users == nil {
		return nil, fmt.Errorf("session: listing sessions of a user: %w", ErrNotSupported)
	}
	bounded, cancel := m.bound(ctx)
	defer cancel()
	infos, err := m.users.ListUser(bounded, userID)
	if err != nil {
		return nil, fmt.Errorf("session: listing sessions of a user: %w", err)
	}
	if st, ok := ctx.Value(contextKey{}).(*sessionState); ok {
		st.lock()
		current := st.key
		st.mu.Unlock()
		for i := range infos {
			infos[i].Current = infos[i].Key == current
		}
	}
	return infos, nil
}

// pruneLoop deletes expired sessions every PruneInterval, jittered by up to
// a fifth so that instances started together do not prune together.
func (m *Manager) pruneLoop(ctx context.Context, pruner Pruner) {
	interval := m.cfg.PruneInterval
	for {
		wait := interval - interval/10 + mrand.N(interval/5+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n, err := m.prune(ctx, pruner)
		switch {
		case err != nil && ctx.Err() == nil:
			m.logger.Warn("session: pruning expired sessions failed; will retry", "pruned", n, "error", err)
		case n > 0:
			m.logger.Debug("session: pruned expired sessions", "count", n)
		}
	}
}

// prune deletes every expired session in batches, each bounded by
// StoreTimeout (see package prune), and returns how many it deleted.
func (m *Manager) prune(ctx context.Context, pruner Pruner) (int, error) {
	return prune.Run(ctx, m.cfg.StoreTimeout, func(ctx context.Context, limit int) (int, error) {
		pruned, err := pruner.Prune(ctx, limit)
		m.emit("expired", pruned...)
		return len(pruned), err
	}, func(r prune.Report) {
		if r.Slow {
			m.logger.Warn("session: a batch of pruning took longer than SESSION_STORE_TIMEOUT: the database answers, but slowly; going on with smaller batches", "deleted", r.Deleted, "batch", r.Batch)
		}
	})
}

// DefaultErrorHandler answers 503 Service Unavailable when the store could
// not be reached (so load balancers and clients retry), 413 Content Too
// Large when a change would take the session over Config.MaxSize, and 500
// otherwise, and logs the error with the Manager's logger. It never writes
// details of the error to the client.
func DefaultErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	logger := slog.Default()
	if st, ok := r.Context().Value(contextKey{}).(*sessionState); ok {
		logger = st.b.logger
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		logger.DebugContext(r.Context(), "session: request canceled by the client before its session was saved", "error", err)
		return
	}
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, ErrTooLarge):
		status = http.StatusRequestEntityTooLarge
	}
	logger.ErrorContext(r.Context(), "session: store error", "status", status, "method", r.Method, "path", r.URL.Path, "error", err)
	http.Error(w, http.StatusText(status), status)
}
