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
)

// Manager loads and saves sessions around each request it wraps. Build one
// with New at start-up, wrap handlers with Handler, and Close it at
// shutdown. A Manager is safe for concurrent use.
type Manager struct {
	cfg          Config
	store        Store
	closeStore   func() // set when New opened the store, so Close closes it
	codec        *cookieCodec
	cookies      cookieTemplate
	logger       *slog.Logger
	errorHandler func(http.ResponseWriter, *http.Request, error)
	now          func() time.Time

	stopPruning context.CancelFunc
	pruning     sync.WaitGroup
	closeOnce   sync.Once
}

// Option adjusts a Manager beyond what Config holds.
type Option func(*Manager)

// WithStore makes the Manager use store instead of the one Config selects.
// The caller keeps ownership: Manager.Close does not close it.
func WithStore(store Store) Option {
	return func(m *Manager) { m.store = store }
}

// WithLogger sets the logger. The default is slog.Default().
func WithLogger(logger *slog.Logger) Option {
	return func(m *Manager) { m.logger = logger }
}

// WithErrorHandler sets what answers a request whose session could not be
// loaded or saved before its headers left. The default, DefaultErrorHandler,
// answers 503 when the store is unreachable and 500 otherwise.
func WithErrorHandler(h func(http.ResponseWriter, *http.Request, error)) Option {
	return func(m *Manager) { m.errorHandler = h }
}

// WithClock replaces time.Now for new sessions' deadlines, cookie expiry and
// the memory store New creates, so tests can move time without sleeping.
func WithClock(now func() time.Time) Option {
	return func(m *Manager) { m.now = now }
}

// New validates cfg, applies its defaults and builds a Manager. Unless
// WithStore supplies one, it opens the store Config selects: PostgreSQL
// (connecting, verifying and migrating within cfg.StoreTimeout) or memory.
// Every configuration problem is reported at once.
func New(ctx context.Context, cfg Config, opts ...Option) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("session: invalid configuration:\n%w", err)
	}
	m := &Manager{
		cfg:    cfg.WithDefaults(),
		logger: slog.Default(),
		now:    time.Now,
	}
	for _, opt := range opts {
		opt(m)
	}
	if m.errorHandler == nil {
		logger := m.logger
		m.errorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			DefaultErrorHandler(logger, w, r, err)
		}
	}
	if m.cfg.Secret == "" {
		m.cfg.Secret = newToken() // 256 random bits, as a session token has
		m.logger.Warn("session: SESSION_SECRET is not set; using a random secret, so sessions will not survive a restart (run `sessionctl secret` to make one)")
	}
	codec, err := newCookieCodec(m.cfg.CookieName, m.cfg.Lifetime, m.cfg.Secret, m.cfg.PreviousSecrets)
	if err != nil {
		return nil, err
	}
	codec.now = m.now
	m.codec = codec
	m.cookies = cookieTemplate{
		name:     m.cfg.CookieName,
		domain:   m.cfg.CookieDomain,
		secure:   m.cfg.Production,
		sameSite: m.cfg.SameSite,
	}
	if m.store == nil {
		if m.cfg.UsePostgres {
			ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
			defer cancel()
			pg, err := OpenPostgresStore(ctx, m.cfg.DatabaseURL, PostgresOptions{
				Table:            m.cfg.Table,
				ManualMigrations: m.cfg.ManualMigrations,
				ConnectTimeout:   m.cfg.StoreTimeout,
			})
			if err != nil {
				return nil, err
			}
			m.store, m.closeStore = pg, pg.Close
		} else {
			m.store = newMemoryStore(m.now)
		}
	}
	pruneCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stopPruning = stop
	m.pruning.Go(func() { m.pruneLoop(pruneCtx) })
	return m, nil
}

// Close stops background pruning and closes the store if New opened it.
// Requests still in flight should be drained first (http.Server.Shutdown).
func (m *Manager) Close() {
	m.closeOnce.Do(func() {
		m.stopPruning()
		m.pruning.Wait()
		if m.closeStore != nil {
			m.closeStore()
		}
	})
}

// Config returns the configuration in force, defaults applied.
func (m *Manager) Config() Config { return m.cfg }

// RevokeUser ends every session of userID at once, on every instance
// sharing the store ("sign out everywhere"), and returns how many ended.
func (m *Manager) RevokeUser(ctx context.Context, userID string) (int, error) {
	ctx, cancel := m.storeContext(ctx)
	defer cancel()
	n, err := m.store.DeleteUser(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("session: revoking sessions of a user: %w", err)
	}
	return n, nil
}

// RevokeSession ends the session stored under key (see Info.Key).
func (m *Manager) RevokeSession(ctx context.Context, key string) error {
	ctx, cancel := m.storeContext(ctx)
	defer cancel()
	if err := m.store.Delete(ctx, key); err != nil {
		return fmt.Errorf("session: revoking a session: %w", err)
	}
	return nil
}

// UserSessions lists userID's live sessions, newest first, for a "your
// devices" page.
func (m *Manager) UserSessions(ctx context.Context, userID string) ([]Info, error) {
	ctx, cancel := m.storeContext(ctx)
	defer cancel()
	infos, err := m.store.ListUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("session: listing sessions of a user: %w", err)
	}
	return infos, nil
}

// storeContext bounds one store call by Config.StoreTimeout.
func (m *Manager) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.cfg.StoreTimeout)
}

// newRecord returns an empty record for a session created at now.
func (m *Manager) newRecord(now time.Time) *Record {
	rec := &Record{
		Values:     nil,
		Persistent: true,
		Created:    now,
		Expiry:     now.Add(m.cfg.Lifetime),
	}
	if m.cfg.IdleTimeout > 0 {
		rec.IdleExpiry = minTime(now.Add(m.cfg.IdleTimeout), rec.Expiry)
	}
	return rec
}

// pruneLoop deletes expired sessions every PruneInterval, jittered by up to
// a fifth so that instances started together do not prune together.
func (m *Manager) pruneLoop(ctx context.Context) {
	interval := m.cfg.PruneInterval
	for {
		wait := interval - interval/10 + mrand.N(interval/5+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		pctx, cancel := context.WithTimeout(ctx, min(interval, time.Minute))
		n, err := m.store.Prune(pctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			m.logger.Warn("session: pruning expired sessions failed; will retry", "error", err)
		case n > 0:
			m.logger.Debug("session: pruned expired sessions", "count", n)
		}
	}
}

// DefaultErrorHandler answers 503 Service Unavailable when the store could
// not be reached (so load balancers and clients retry) and 500 otherwise,
// and logs the error. It never writes details of the error to the client.
func DefaultErrorHandler(logger *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		logger.DebugContext(r.Context(), "session: request canceled by the client before its session was saved", "error", err)
		return
	}
	logger.ErrorContext(r.Context(), "session: store error", "status", status, "method", r.Method, "path", r.URL.Path, "error", err)
	http.Error(w, http.StatusText(status), status)
}
