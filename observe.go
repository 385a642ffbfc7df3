package session

import (
	"context"
	"net/http"
)

// Observer is told what a Manager does as it happens, for metrics and
// traces; package sessionotel implements it with OpenTelemetry. Its methods
// run on the request's path: they must be quick, must not block, and must
// be safe for concurrent use. Without WithObserver nothing is called and
// nothing allocated.
type Observer interface {
	// StoreCall is called as a store call begins, with its operation
	// (load, insert, apply, touch, rekey, modify, destroy, list-user,
	// destroy-user, trim-user, prune); the function it returns is called
	// when the call ends, with its error, if any. Neither sees a token or
	// a store key.
	StoreCall(ctx context.Context, op string) (end func(error))
	// TokenRefused is called for a request whose token was refused, or led
	// nowhere, with the reason: "malformed" (not a value this library
	// signs), "signature" (signed with a secret the Manager does not
	// know), "expired" (older than Config.Lifetime) or "unknown" (valid,
	// but no session is stored under it: ended, expired, revoked).
	TokenRefused(ctx context.Context, reason string)
	// Event is called for every Event, on the request's path, before the
	// WithEvents hook hears of it.
	Event(Event)
	// Answered is called when the error handler answered a request in
	// place of its handler, with the status it wrote (503 for a store
	// outage with DefaultErrorHandler).
	Answered(ctx context.Context, status int)
	// LiveSessions is called once, by New, with a function counting the
	// store's live sessions, when the store can count them (the memory,
	// PostgreSQL and Redis stores). It may be called as often as metrics
	// are collected, never on a request's path: it reads the whole store.
	LiveSessions(count func(context.Context) (int64, error))
}

// WithObserver has o told what the Manager does; see Observer.
func WithObserver(o Observer) Option {
	return func(m *Manager) { m.observer = o }
}

// counter is implemented by the stores that can count their live sessions
// for an Observer.
type counter interface {
	countLive(ctx context.Context) (int64, error)
}

// observedStore tells an Observer of every call to the store it wraps. The
// Manager wraps its store in one only when it has an Observer, and asks the
// wrapped store, not this one, which optional interfaces it has.
type observedStore struct {
	Store
	o Observer
}

// observe tells o of one store call, op, made by call.
func observe[T any](ctx context.Context, o Observer, op string, call func() (T, error)) (T, error) {
	end := o.StoreCall(ctx, op)
	v, err := call()
	end(err)
	return v, err
}

func (s observedStore) Load(ctx context.Context, key string) (*Record, error) {
	return observe(ctx, s.o, "load", func() (*Record, error) { return s.Store.Load(ctx, key) })
}

func (s observedStore) Insert(ctx context.Context, key string, rec *Record) error {
	_, err := observe(ctx, s.o, "insert", func() (struct{}, error) { return struct{}{}, s.Store.Insert(ctx, key, rec) })
	return err
}

func (s observedStore) Apply(ctx context.Context, key string, change Change) (*Record, error) {
	op := "apply"
	if change.touchOnly() {
		op = "touch"
	}
	return observe(ctx, s.o, op, func() (*Record, error) { return s.Store.Apply(ctx, key, change) })
}

func (s observedStore) Rekey(ctx context.Context, oldKey, newKey string, change Change, fresh *Record) (*Record, error) {
	return observe(ctx, s.o, "rekey", func() (*Record, error) { return s.Store.Rekey(ctx, oldKey, newKey, change, fresh) })
}

func (s observedStore) Modify(ctx context.Context, key string, fn func(*Record) error) (*Record, error) {
	return observe(ctx, s.o, "modify", func() (*Record, error) { return s.Store.Modify(ctx, key, fn) })
}

func (s observedStore) Destroy(ctx context.Context, key string) (*Info, error) {
	return observe(ctx, s.o, "destroy", func() (*Info, error) { return s.Store.Destroy(ctx, key) })
}

func (s observedStore) ListUser(ctx context.Context, userID string) ([]Info, error) {
	return observe(ctx, s.o, "list-user", func() ([]Info, error) { return s.Store.(UserIndex).ListUser(ctx, userID) })
}

func (s observedStore) DestroyUser(ctx context.Context, userID, keep string) ([]Info, error) {
	return observe(ctx, s.o, "destroy-user", func() ([]Info, error) { return s.Store.(UserIndex).DestroyUser(ctx, userID, keep) })
}

func (s observedStore) TrimUser(ctx context.Context, userID string, max int) ([]Info, error) {
	return observe(ctx, s.o, "trim-user", func() ([]Info, error) { return s.Store.(UserIndex).TrimUser(ctx, userID, max) })
}

func (s observedStore) Prune(ctx context.Context, limit int) ([]Info, error) {
	return observe(ctx, s.o, "prune", func() ([]Info, error) { return s.Store.(Pruner).Prune(ctx, limit) })
}

// statusRecorder is the ResponseWriter the error handler writes to when an
// Observer wants to know the status it chose.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// answer has the error handler answer r with err, telling the Observer.
func (m *Manager) answer(w http.ResponseWriter, r *http.Request, err error) {
	if m.observer == nil {
		m.errorHandler(w, r, err)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	m.errorHandler(rec, r, err)
	m.observer.Answered(r.Context(), rec.status)
}
