package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNoValue is returned for a key the session does not hold.
var ErrNoValue = errors.New("session: no value for key")

// flashKey holds flash messages; Keys does not list it.
const flashKey = "__flash"

type contextKey struct{}

// sessionState is what every Session of one request shares: the state,
// under its lock, and the Session bound to the request's own context.
type sessionState struct {
	mu sync.Mutex
	state
	session *Session
	// unread holds what begin left for the first use of the session: the
	// Manager and the request whose credential it has not read yet. A
	// request that never uses its session never parses its cookie nor
	// checks its signature.
	unread struct {
		m *Manager
		r *http.Request
	}
}

// lock locks the session and, on its first use, reads the request's
// credential (Manager.introduce, in credential.go).
func (s *sessionState) lock() {
	s.mu.Lock()
	if m := s.unread.m; m != nil {
		m.introduce(s)
	}
}

// FromContext returns the request's session. Store calls made through it
// run under ctx, so a deadline or cancellation that middleware inside
// Manager.Handler added (http.TimeoutHandler, say) bounds them too.
//
// It panics when ctx does not come from a request that passed through
// Manager.Handler or Manager.Begin: that is a wiring mistake, not a
// condition a handler can recover from.
func FromContext(ctx context.Context) *Session {
	st, ok := ctx.Value(contextKey{}).(*sessionState)
	if !ok {
		panic("session: FromContext: no session in this context: wrap the handler with Manager.Handler (or call Manager.Begin)")
	}
	if ctx == st.session.ctx {
		return st.session // the request's own context: the usual case
	}
	return &Session{sessionState: st, ctx: ctx}
}

// Session is one request's view of a session. Nothing is read from the
// store until a method needs it, and nothing is written unless something
// changed, so a handler that never touches its session costs no store call.
// A Session is safe for use by the request's goroutines concurrently.
//
// Every method that can fail says so with an error; see the package
// documentation for what each error means and who answers it.
type Session struct {
	*sessionState
	// ctx bounds the store calls made through this Session: the context
	// FromContext was given.
	ctx context.Context
}

// Err reads the session if nothing has been read yet, and reports why the
// store could not answer, or nil. It changes nothing: unless the handler
// calls Degrade, a request whose session could not be read is answered by
// the Manager's error handler.
func (s *Session) Err() error {
	s.lock()
	defer s.mu.Unlock()
	return s.read(s.ctx)
}

// Degrade is Err for a handler that can serve the request without its
// session (a public page that offers sign-in later, say): if the store
// cannot answer, the handler's own response stands instead of the error
// handler's. It returns the store's failure, or nil.
func (s *Session) Degrade() error {
	s.lock()
	defer s.mu.Unlock()
	s.degraded = true
	return s.read(s.ctx)
}

// Value returns the value stored under key as a T. The error is ErrNoValue
// (wrapped) when there is none, a decoding error when the stored JSON does
// not fit T (that key is unusable, the rest of the session is not), or the
// store's failure.
func Value[T any](s *Session, key string) (T, error) {
	var v T
	err := s.value(key, &v, false)
	return v, err
}

// value decodes the value under key into dst, and with pop removes it.
func (s *Session) value(key string, dst any, pop bool) error {
	s.lock()
	defer s.mu.Unlock()
	prepare := s.read
	if pop {
		prepare = s.change
	}
	if err := prepare(s.ctx); err != nil {
		return err
	}
	if err := decodeValue(s.values, key, dst); err != nil {
		return err
	}
	if pop {
		s.delete(key)
	}
	return nil
}

// decodeValue unmarshals values[key] into dst.
func decodeValue(values map[string]json.RawMessage, key string, dst any) error {
	raw, ok := values[key]
	if !ok {
		return fmt.Errorf("%w %q", ErrNoValue, key)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return &decodeError{key: key, dst: dst, err: err}
	}
	return nil
}

// decodeError is a stored value that does not decode into the type asked
// for: that key is unusable, the rest of the session is not.
type decodeError struct {
	key string
	dst any
	err error
}

func (e *decodeError) Error() string {
	return fmt.Sprintf("session: value %q does not decode into %T: %v", e.key, e.dst, e.err)
}

func (e *decodeError) Unwrap() error { return e.err }

// Set stores value under key as JSON. It fails, changing nothing, when the
// value does not marshal, when key or value holds a NUL character (which
// PostgreSQL cannot store), or when the session is known to exceed
// Config.MaxSize; the store checks the cap again when it saves.
func (s *Session) Set(key string, value any) error {
	raw, err := encodeValue(key, value)
	if err != nil {
		return err
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.write(); err != nil {
		return err
	}
	if err := s.checkSize(key, raw); err != nil {
		return err
	}
	s.set(key, raw)
	return nil
}

// encodeValue marshals value for key, refusing what no store can keep.
func encodeValue(key string, value any) (json.RawMessage, error) {
	raw, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("session: value %q does not marshal to JSON: %w", key, err)
	}
	if strings.IndexByte(key, 0) >= 0 || strings.Contains(string(raw), `\u0000`) {
		return nil, fmt.Errorf("session: value %q holds a NUL character, which the session stores cannot keep: strip it first", key)
	}
	return raw, nil
}

// checkSize refuses a value that would take the session over
// Config.MaxSize, as far as this request can tell. Called with s.mu held.
func (s *Session) checkSize(key string, raw json.RawMessage) error {
	limit := s.b.cfg.MaxSize
	if limit <= 0 {
		return nil
	}
	size := entrySize(key, raw) + 2
	if s.values != nil {
		size = (&Change{Set: map[string]json.RawMessage{key: raw}}).sizeAfter(s.values)
	}
	if size > limit {
		return fmt.Errorf("%w: setting %q would make the session %d bytes, over the %d-byte cap (SESSION_MAX_SIZE); store large data elsewhere and keep its ID in the session", ErrTooLarge, key, size, limit)
	}
	return nil
}

// Delete removes key from the session.
func (s *Session) Delete(key string) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.write(); err != nil {
		return err
	}
	s.delete(key)
	return nil
}

// Pop returns the value under key as a T and removes it, in one step, as
// one-time values (flash messages, OAuth state, nonces) need. Its errors
// are Value's, and ErrCommitted once the response's headers have left.
func Pop[T any](s *Session, key string) (T, error) {
	var v T
	err := s.value(key, &v, true)
	return v, err
}

// Clear removes every value, keeping the session itself and its user.
func (s *Session) Clear() error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.write(); err != nil {
		return err
	}
	s.clear()
	return nil
}

// Keys returns the session's keys in sorted order.
func (s *Session) Keys() ([]string, error) {
	s.lock()
	defer s.mu.Unlock()
	if err := s.read(s.ctx); err != nil {
		return nil, err
	}
	keys := slices.Sorted(maps.Keys(s.values))
	return slices.DeleteFunc(keys, func(k string) bool { return k == flashKey }), nil
}

// AddFlash queues a message for the next request that calls Flashes, as
// after a redirect.
func (s *Session) AddFlash(message string) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.change(s.ctx); err != nil {
		return err
	}
	var flashes []string
	if raw, ok := s.values[flashKey]; ok {
		_ = json.Unmarshal(raw, &flashes) // a corrupt queue is replaced
	}
	raw, err := encodeValue(flashKey, append(flashes, message))
	if err != nil {
		return err
	}
	if err := s.checkSize(flashKey, raw); err != nil {
		return err
	}
	s.set(flashKey, raw)
	return nil
}

// Flashes returns the queued flash messages and removes them. Read them
// before writing the response: afterwards their removal could not be
// saved, and Flashes returns ErrCommitted. A queue that does not decode
// (written by another version of the application) is dropped.
func (s *Session) Flashes() ([]string, error) {
	flashes, err := Pop[[]string](s, flashKey)
	switch {
	case errors.Is(err, ErrNoValue):
		return nil, nil
	case errors.As(err, new(*decodeError)):
		return nil, s.Delete(flashKey)
	}
	return flashes, err
}

// SetUser records which user the session belongs to, so that
// Manager.RevokeUser can end all of that user's sessions. Changing the user
// (a sign-in, or another user signing in on the same browser) also gives
// the session a new token, as Renew does: a cookie planted before sign-in
// never becomes the signed-in session. A sign-in also starts a new
// absolute lifetime, which Renew alone never does.
func (s *Session) SetUser(userID string) error {
	return s.changeWith(func() {
		if userID != s.userID() {
			s.pending.UserID = &userID
			s.renew = true
		}
	})
}

// changeWith runs fn under the lock once the session may be changed: read,
// and the response not started (see state.change).
func (s *Session) changeWith(fn func()) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.change(s.ctx); err != nil {
		return err
	}
	fn()
	return nil
}

// UserID returns the user recorded by SetUser, or "".
func (s *Session) UserID() (string, error) {
	s.lock()
	defer s.mu.Unlock()
	if err := s.read(s.ctx); err != nil {
		return "", err
	}
	return s.userID(), nil
}

// SetRememberMe chooses between a persistent cookie, kept across browser
// restarts until the session expires (the default), and a browser-session
// cookie, dropped when the browser closes.
func (s *Session) SetRememberMe(remember bool) error {
	return s.changeWith(func() {
		if remember != s.persistent() {
			s.pending.Persistent = &remember
		}
	})
}

// Deadline returns when the session will expire if nothing else happens:
// the earlier of its absolute and idle expiry, in the Manager's clock. For a
// session not yet stored it is the deadline it would get now.
func (s *Session) Deadline() (time.Time, error) {
	s.lock()
	defer s.mu.Unlock()
	if err := s.read(s.ctx); err != nil {
		return time.Time{}, err
	}
	return s.deadline().Add(-s.offset), nil
}

// Renew gives the session a new token, keeping its data, and makes the old
// token useless at once. Call it whenever privileges change; SetUser does
// it by itself at sign-in. A renewed session keeps its absolute deadline
// (Config.Lifetime from its sign-in): renewing never extends a session.
func (s *Session) Renew() error {
	return s.changeWith(func() { s.renew = true })
}

// RevokeOthers ends every other session of the session's user at once, on
// every instance ("sign out other devices", after a password change), and
// returns how many ended; this one stays. An anonymous session has none.
// It returns ErrNotSupported when the store has no UserIndex.
func (s *Session) RevokeOthers() (int, error) {
	s.lock()
	defer s.mu.Unlock()
	if err := s.read(s.ctx); err != nil {
		return 0, err
	}
	user := s.userID()
	switch {
	case s.b.users == nil:
		return 0, fmt.Errorf("session: revoking the other sessions of a user: %w", ErrNotSupported)
	case user == "":
		return 0, nil
	}
	ctx, cancel := s.b.bound(s.ctx)
	defer cancel()
	ended, err := s.b.users.DestroyUser(ctx, user, s.key)
	if err != nil {
		return 0, fmt.Errorf("session: revoking the other sessions of a user: %w", err)
	}
	s.b.emit("revoked", ended...)
	return len(ended), nil
}

// SetLifetime gives the session lifetimes of its own: absolute, counted
// from its sign-in (or its creation), after which it ends however active,
// and idle, after which an unused session ends. Zero keeps the configured
// one. Shorter suits an administrator's session, longer a "remember me";
// neither may exceed Config.MaxLifetime (SESSION_MAX_LIFETIME), which
// defaults to Config.Lifetime: a longer session is one the configuration
// allows on purpose. The store keeps them, pruning and Deadline honour
// them, and a renewal or a sign-in in the same request keeps them.
func (s *Session) SetLifetime(absolute, idle time.Duration) error {
	limit := s.b.cfg.MaxLifetime
	switch {
	case absolute < 0 || idle < 0:
		return errors.New("session: SetLifetime: a lifetime cannot be negative")
	case absolute > limit || idle > limit:
		return fmt.Errorf("session: SetLifetime(%s, %s) exceeds the longest lifetime allowed, %s: raise SESSION_MAX_LIFETIME to allow it", absolute, idle, limit)
	}
	return s.changeWith(func() { s.lifetime.absolute, s.lifetime.idle = absolute, idle })
}

// Destroy ends the session: it is deleted from the store now, and the
// response clears the cookie. A value set afterwards in the same request
// starts a new, empty session (a "signed out" flash message, say).
func (s *Session) Destroy() error {
	s.lock()
	defer s.mu.Unlock()
	return s.destroy(s.ctx)
}

// Update atomically replaces the value under key with fn's result: fn gets
// the current value (and whether there was one) with no other request able
// to change the session until it returns, which makes counters, carts and
// rate limits exact under concurrent requests. The session's other pending
// changes are saved in the same step. If fn returns an error nothing is
// saved and Update returns it. Update writes to the store at once, so it
// also works after the response has started, on a session already stored
// (a WebSocket connection's messages, say); one that would need a new
// cookie then fails with ErrCommitted.
//
// fn runs with the session locked in this request, so it must not call
// methods of s, which would deadlock, and should not block. The store keeps
// other writers out by locking (the memory store; PostgreSQL when it reads
// the row: a row lock and a pool connection) or by running fn again when
// another request changed the session first (Redis; PostgreSQL on a session
// this process wrote last, which saves a round trip), so fn must not have
// side effects beyond its result.
func Update[T any](s *Session, key string, fn func(current T, ok bool) (T, error)) (T, error) {
	var result T
	s.lock()
	defer s.mu.Unlock()
	limit := s.b.cfg.MaxSize
	err := s.update(s.ctx, func(rec *Record) error {
		var current T
		err := decodeValue(rec.Values, key, &current)
		if err != nil && !errors.Is(err, ErrNoValue) {
			return err
		}
		next, err := fn(current, err == nil)
		if err != nil {
			return err
		}
		encoded, err := encodeValue(key, next)
		if err != nil {
			return err
		}
		rec.Values[key] = encoded
		if limit > 0 && encodedSize(rec.Values) > limit {
			return fmt.Errorf("%w: updating %q would exceed the %d-byte cap (SESSION_MAX_SIZE)", ErrTooLarge, key, limit)
		}
		result = next
		return nil
	})
	return result, err
}
