package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Errors a handler may see from a Session.
var (
	// ErrNoValue is returned by Get for a key the session does not hold.
	ErrNoValue = errors.New("session: no value for key")
	// ErrTooLarge is returned by Set when the session would exceed
	// Config.MaxSize.
	ErrTooLarge = errors.New("session: too large")
	// ErrNoMiddleware is returned by every Session method when the request
	// did not pass through Manager.Handler.
	ErrNoMiddleware = errors.New("session: no session in context: wrap the handler with Manager.Handler")
	// ErrCommitted is returned by methods that change the session after
	// the response's headers have left, when the change can no longer be
	// saved.
	ErrCommitted = errors.New("session: response already sent, change not saved: change the session before writing the response")
)

// flashKey holds flash messages; Keys does not list it.
const flashKey = "__flash"

type contextKey struct{}

// FromContext returns the request's session. Store calls made through it
// run under ctx, so a deadline that middleware inside Manager.Handler set
// (http.TimeoutHandler, say) bounds them too. Outside Manager.Handler it
// returns a session whose every method fails with ErrNoMiddleware.
func FromContext(ctx context.Context) *Session {
	if st, ok := ctx.Value(contextKey{}).(*sessionState); ok {
		if ctx == st.session.ctx {
			return st.session // the request's own context: the usual case
		}
		return &Session{sessionState: st, ctx: ctx}
	}
	return &Session{sessionState: &sessionState{loaded: true, err: ErrNoMiddleware}}
}

// Session is one request's view of a session. Nothing is read from the
// store until a method needs it, and nothing is written unless something
// changed, so a handler that never touches its session costs no store call.
// A Session is safe for use by the request's goroutines concurrently.
type Session struct {
	*sessionState
	// ctx bounds the store calls made through this Session: the context
	// FromContext was given, so a deadline or cancellation that middleware
	// inside Manager.Handler added applies too.
	ctx context.Context
}

// sessionState is what every Session of one request shares.
type sessionState struct {
	m   *Manager
	req *http.Request
	// session is the Session bound to req's context, which FromContext
	// returns for that context rather than allocating another.
	session *Session

	mu        sync.Mutex
	loaded    bool
	err       error   // load failure, reported by every method and at commit
	errSeen   bool    // the handler checked Err, so it answers the failure itself
	committed bool    // commit ran: later changes cannot be saved
	token     string  // "" until the session has one
	rec       *Record // what the store holds; nil for a session not yet stored
	// storeOffset converts the Manager's clock to the store's (see now).
	storeOffset time.Duration
	values      map[string]json.RawMessage
	changes     []change // data changes not yet saved
	userID      string
	persistent  bool
	metaChanged bool // userID or persistent changed
	renew       bool
	clearCookie bool // the session ended: expire the cookie unless a new one is stored
	sendCookie  bool // the cookie must be (re)sent at commit
}

// change is one data operation. A request's changes are sent to the store
// as one Change, applied to the record as it is then, so that concurrent
// requests changing different keys both land.
type change struct {
	key   string // "" with clear
	value json.RawMessage
	del   bool
	clear bool
}

func (c change) apply(values map[string]json.RawMessage) {
	switch {
	case c.clear:
		clear(values)
	case c.del:
		delete(values, c.key)
	default:
		values[c.key] = c.value
	}
}

// load reads the session on first use, keeping any changes Set, Delete or
// Clear recorded before it (see beginWrite) on top. Called with s.mu held.
func (s *Session) load() error {
	if s.loaded {
		return s.err
	}
	pending := s.changes
	token, rotated, ok := s.m.codec.tokenFrom(s.req)
	if !ok {
		// Parsing the cookies again costs every visitor without a session;
		// only a debug log needs it.
		if s.m.logger.Enabled(s.ctx, slog.LevelDebug) && len(s.req.CookiesNamed(s.m.cfg.CookieName)) > 0 {
			s.m.logger.DebugContext(s.ctx, "session: ignoring a cookie that does not verify; starting a new session")
		}
		s.startNew(pending, false)
		return nil
	}
	ctx, cancel := s.m.storeContext(s.ctx)
	defer cancel()
	rec, err := s.m.store.Load(ctx, storeKey(token))
	switch {
	case errors.Is(err, ErrNotFound):
		s.startNew(pending, true)
		return nil
	case err != nil:
		s.loaded = true
		s.err = fmt.Errorf("session: loading: %w", err)
		return s.err
	}
	s.loaded = true
	s.adopt(token, rec)
	s.sendCookie = rotated // re-issue it signed with the current secret
	for _, c := range pending {
		s.record(c)
	}
	return nil
}

// startNew makes the session a new one holding only the pending changes.
// staleCookie reports a verified cookie whose session is gone (revoked,
// expired, pruned): it is cleared so the browser stops sending it, unless
// the response stores a new session. Called with s.mu held.
func (s *Session) startNew(pending []change, staleCookie bool) {
	s.reset()
	s.loaded = true
	s.clearCookie = staleCookie
	for _, c := range pending {
		s.record(c)
	}
}

// adopt makes rec, stored under token's key, the session's state. Called
// with s.mu held.
func (s *Session) adopt(token string, rec *Record) {
	s.token = token
	s.rec = rec
	s.storeOffset = rec.LoadedAt.Sub(s.m.now())
	// The session takes the map over: every caller passes a record of its
	// own, and nothing reads s.rec.Values afterwards. A record from
	// Store.Apply carries none: the session's own values, which the save
	// just stored, stay.
	if rec.Values != nil {
		s.values, rec.Values = rec.Values, nil
	}
	if s.values == nil {
		s.values = map[string]json.RawMessage{}
	}
	s.changes = nil
	s.userID = rec.UserID
	s.persistent = rec.Persistent
	s.metaChanged = false
}

// now is the store's clock, as far as this session knows it: the time the
// store reported at load, advanced by the Manager's monotonic clock. New
// sessions use the Manager's clock.
func (s *Session) now() time.Time {
	return s.m.now().Add(s.storeOffset)
}

func encodedSize(values map[string]json.RawMessage) int {
	n := 0
	for k, v := range values {
		n += len(k) + len(v)
	}
	return n
}

// begin locks and loads the session. The caller must call s.mu.Unlock.
func (s *Session) begin() error {
	s.mu.Lock()
	return s.load()
}

// Err reports why the session could not be loaded (a store outage), or nil.
// The Manager's error handler answers such a request before its headers
// leave; handlers that want to degrade differently can check Err first.
func (s *Session) Err() error {
	defer s.mu.Unlock()
	err := s.begin()
	s.errSeen = err != nil
	return err
}

// beginChange is begin for methods that change the session: after commit
// they fail with ErrCommitted. The caller must call s.mu.Unlock.
func (s *Session) beginChange() error {
	s.mu.Lock()
	if s.committed {
		return ErrCommitted
	}
	return s.load()
}

// beginWrite is beginChange for Set, Delete and Clear, which need nothing
// from the stored session: unless Config.MaxSize needs its size, it leaves
// the session unloaded and records the change, and commit applies it to the
// stored session in one store call. A handler that only writes costs one
// statement. The caller must call s.mu.Unlock.
func (s *Session) beginWrite() error {
	s.mu.Lock()
	switch {
	case s.committed:
		return ErrCommitted
	case s.loaded:
		return s.err
	case s.m.cfg.MaxSize > 0:
		return s.load()
	}
	if s.values == nil {
		s.values = map[string]json.RawMessage{}
	}
	return nil
}

// Get decodes the value stored under key into dst, which must be a pointer.
// It returns ErrNoValue if there is none, and a decoding error if the
// stored JSON does not fit dst: that key is unusable, the rest of the
// session is not.
func (s *Session) Get(key string, dst any) error {
	defer s.mu.Unlock()
	if err := s.begin(); err != nil {
		return err
	}
	raw, ok := s.values[key]
	if !ok {
		return fmt.Errorf("%w %q", ErrNoValue, key)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("session: value %q does not decode into %T: %w", key, dst, err)
	}
	return nil
}

// Value returns the value stored under key as a T, and whether there was
// one that decodes as T. Use Get to learn why a value is missing.
func Value[T any](s *Session, key string) (T, bool) {
	var v T
	err := s.Get(key, &v)
	return v, err == nil
}

// Set stores value under key as JSON. It fails, changing nothing, when the
// value does not marshal or the session would exceed Config.MaxSize.
func (s *Session) Set(key string, value any) error {
	raw, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("session: value %q does not marshal to JSON: %w", key, err)
	}
	defer s.mu.Unlock()
	if err := s.beginWrite(); err != nil {
		return err
	}
	return s.setRaw(key, raw)
}

// setRaw is Set after marshalling. Called with s.mu held.
func (s *Session) setRaw(key string, raw json.RawMessage) error {
	if limit := s.m.cfg.MaxSize; limit > 0 {
		// beginWrite loaded the session, so its values are all here.
		old, had := s.values[key]
		size := encodedSize(s.values) + len(raw) - len(old)
		if !had {
			size += len(key)
		}
		if size > limit {
			return fmt.Errorf("%w: setting %q would make the session %d bytes, over the %d-byte cap (SESSION_MAX_SIZE); store large data elsewhere and keep its ID in the session", ErrTooLarge, key, size, limit)
		}
	}
	s.record(change{key: key, value: raw})
	return nil
}

// record applies c to the working values and remembers it for the save.
// Called with s.mu held.
func (s *Session) record(c change) {
	c.apply(s.values)
	s.changes = append(s.changes, c)
}

// Delete removes key from the session. After the response's headers have
// left it does nothing (see ErrCommitted).
func (s *Session) Delete(key string) {
	defer s.mu.Unlock()
	if s.beginWrite() != nil {
		return
	}
	if _, ok := s.values[key]; ok || !s.loaded {
		s.record(change{key: key, del: true})
	}
}

// Pop returns the value under key as a T and removes it, in one step, as
// one-time values (flash messages, OAuth state, nonces) need. After the
// response's headers have left the removal could not be saved, so Pop then
// returns nothing.
func Pop[T any](s *Session, key string) (T, bool) {
	var v T
	defer s.mu.Unlock()
	if s.beginChange() != nil {
		return v, false
	}
	raw, ok := s.values[key]
	if !ok || json.Unmarshal(raw, &v) != nil {
		return v, false
	}
	s.record(change{key: key, del: true})
	return v, true
}

// Clear removes every value, keeping the session itself and its user.
// After the response's headers have left it does nothing (see
// ErrCommitted).
func (s *Session) Clear() {
	defer s.mu.Unlock()
	if s.beginWrite() != nil || (s.loaded && len(s.values) == 0) {
		return
	}
	s.record(change{clear: true})
}

// Keys returns the session's keys in sorted order.
func (s *Session) Keys() []string {
	defer s.mu.Unlock()
	if s.begin() != nil {
		return nil
	}
	keys := slices.Sorted(maps.Keys(s.values))
	return slices.DeleteFunc(keys, func(k string) bool { return k == flashKey })
}

// AddFlash queues a message for the next request that calls Flashes, as
// after a redirect.
func (s *Session) AddFlash(message string) error {
	defer s.mu.Unlock()
	if err := s.beginChange(); err != nil {
		return err
	}
	var flashes []string
	if raw, ok := s.values[flashKey]; ok {
		_ = json.Unmarshal(raw, &flashes) // a corrupt queue is replaced
	}
	raw, err := json.Marshal(append(flashes, message))
	if err != nil {
		return err
	}
	return s.setRaw(flashKey, raw)
}

// Flashes returns the queued flash messages and removes them.
func (s *Session) Flashes() []string {
	flashes, _ := Pop[[]string](s, flashKey)
	return flashes
}

// SetUser records which user the session belongs to, so that
// Manager.RevokeUser can end all of that user's sessions. Call it at sign-in,
// together with Renew.
func (s *Session) SetUser(userID string) error {
	return setMetadata(s, &s.userID, userID)
}

// UserID returns the user recorded by SetUser, or "".
func (s *Session) UserID() string {
	defer s.mu.Unlock()
	if s.begin() != nil {
		return ""
	}
	return s.userID
}

// SetRememberMe chooses between a persistent cookie, kept across browser
// restarts until the session expires (the default), and a browser-session
// cookie, dropped when the browser closes.
func (s *Session) SetRememberMe(remember bool) error {
	return setMetadata(s, &s.persistent, remember)
}

// setMetadata sets field, one of the session's metadata, to v, and marks
// the metadata changed when that is a change.
func setMetadata[T comparable](s *Session, field *T, v T) error {
	defer s.mu.Unlock()
	if err := s.beginChange(); err != nil {
		return err
	}
	if *field != v {
		*field = v
		s.metaChanged = true
	}
	return nil
}

// Key returns the session's store key (not a credential), to recognise the
// current session in Manager.UserSessions. It is "" until the session is
// stored.
func (s *Session) Key() string {
	defer s.mu.Unlock()
	if s.begin() != nil || s.token == "" {
		return ""
	}
	return storeKey(s.token)
}

// Deadline returns when the session will expire if nothing else happens:
// the earlier of its absolute and idle expiry, in the Manager's clock. For a
// session not yet stored it is the deadline it would get now.
func (s *Session) Deadline() time.Time {
	defer s.mu.Unlock()
	if s.begin() != nil {
		return time.Time{}
	}
	if s.rec == nil {
		return s.m.newRecord(s.m.now()).Deadline()
	}
	return s.rec.Deadline().Add(-s.storeOffset)
}

// Renew gives the session a new token, keeping its data, and makes the old
// token useless at once. Call it whenever privileges change, above all at
// sign-in, against session fixation.
func (s *Session) Renew() error {
	defer s.mu.Unlock()
	if err := s.beginChange(); err != nil {
		return err
	}
	s.renew = true
	return nil
}

// Destroy ends the session: it is deleted from the store now, and the
// response clears the cookie. A value set afterwards in the same request
// starts a new, empty session (a "signed out" flash message, say).
func (s *Session) Destroy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded && s.err != nil {
		return s.err
	}
	token := s.token
	if !s.loaded {
		// Deleting needs only the key: no need to read the session first.
		token, _, _ = s.m.codec.tokenFrom(s.req)
	}
	if token != "" {
		ctx, cancel := s.m.storeContext(s.ctx)
		defer cancel()
		if err := s.m.store.Delete(ctx, storeKey(token)); err != nil {
			return fmt.Errorf("session: destroying: %w", err)
		}
	}
	s.reset()
	s.loaded = true
	s.clearCookie = s.clearCookie || token != ""
	return nil
}

// reset turns the session into a new, empty one whose old cookie the
// response clears, after Destroy or when another request ended it. Called
// with s.mu held.
func (s *Session) reset() {
	s.clearCookie = s.clearCookie || s.token != ""
	s.token = ""
	s.rec = nil
	s.storeOffset = 0
	s.values = map[string]json.RawMessage{}
	s.changes = nil
	s.userID = ""
	s.persistent = true
	s.metaChanged = false
	s.renew = false
	s.sendCookie = false
}

// Update atomically replaces the value under key with fn's result: fn gets
// the current value (and whether there was one) with no other request able
// to change the session until it returns, which makes counters, carts and
// rate limits exact under concurrent requests. The session's other pending
// changes are saved in the same step. If fn returns an error nothing is
// saved and Update returns it.
//
// fn runs with the session locked, in this request and in the store
// (PostgreSQL: a row lock and a pool connection; the memory store: the
// whole store). It must not call methods of s, which would deadlock, and
// should not block.
func Update[T any](s *Session, key string, fn func(current T, ok bool) (T, error)) (T, error) {
	var result T
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return result, err
	}
	if s.rec == nil || s.renew {
		if s.committed {
			return result, ErrCommitted // its new cookie could not be sent
		}
		// Update works on a stored row: store the session first.
		if err := s.insert(); err != nil {
			return result, err
		}
		if s.rec == nil {
			return result, fmt.Errorf("session: updating: the session ended meanwhile: %w", ErrNotFound)
		}
	}
	ctx, cancel := s.m.storeContext(s.ctx)
	defer cancel()
	pending := s.pendingChange()
	rec, err := s.m.store.Update(ctx, storeKey(s.token), func(rec *Record) error {
		pending.ApplyTo(rec, rec.LoadedAt)
		var current T
		raw, ok := rec.Values[key]
		if ok {
			if err := json.Unmarshal(raw, &current); err != nil {
				return fmt.Errorf("session: value %q does not decode into %T: %w", key, current, err)
			}
		}
		next, err := fn(current, ok)
		if err != nil {
			return err
		}
		encoded, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("session: value %q does not marshal to JSON: %w", key, err)
		}
		rec.Values[key] = encoded
		if limit := s.m.cfg.MaxSize; limit > 0 && encodedSize(rec.Values) > limit {
			return fmt.Errorf("%w: updating %q would exceed the %d-byte cap (SESSION_MAX_SIZE)", ErrTooLarge, key, limit)
		}
		result = next
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		s.reset()
		return result, fmt.Errorf("session: updating: the session ended meanwhile: %w", err)
	}
	if err != nil {
		return result, err
	}
	s.adoptSaved(rec)
	return result, nil
}

// pendingChange is the request's changes as one Change for Store.Apply.
// Called with s.mu held.
func (s *Session) pendingChange() Change {
	c := Change{Set: map[string]json.RawMessage{}, IdleTimeout: s.m.cfg.IdleTimeout}
	for _, ch := range s.changes {
		switch {
		case ch.clear:
			c.Clear, c.Delete = true, nil
			clear(c.Set)
		case ch.del:
			delete(c.Set, ch.key)
			c.Delete = append(c.Delete, ch.key)
		default:
			c.Set[ch.key] = ch.value
		}
	}
	if s.metaChanged {
		userID, persistent := s.userID, s.persistent
		c.UserID, c.Persistent = &userID, &persistent
	}
	return c
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// dirty reports whether the session has unsaved changes. Called with s.mu
// held.
func (s *Session) dirty() bool {
	return len(s.changes) > 0 || s.metaChanged || s.renew
}

// save writes the session to the store: an insert for a new or renewed
// session, one Store.Apply of the request's changes for a changed one, or a
// narrow touch of the idle expiry when only that is due. Called with s.mu
// held, before the response's headers leave.
func (s *Session) save() error {
	if !s.loaded {
		if saved, err := s.applyUnloaded(); saved || err != nil {
			return err
		}
	}
	if s.rec == nil || s.renew {
		if !s.dirty() {
			return nil // an untouched new session is not worth storing
		}
		return s.insert()
	}
	if !s.dirty() {
		return s.touchIfDue()
	}
	ctx, cancel := s.m.storeContext(s.ctx)
	defer cancel()
	rec, err := s.m.store.Apply(ctx, storeKey(s.token), s.pendingChange())
	if errors.Is(err, ErrNotFound) {
		s.reset() // destroyed or renewed by another request: never re-created
		return nil
	}
	if err != nil {
		return fmt.Errorf("session: saving: %w", err)
	}
	s.adoptSaved(rec)
	return nil
}

// adoptSaved is adopt after a write to the stored session: the cookie is
// re-sent when the write moved the deadline or changed the persistence.
// Called with s.mu held.
func (s *Session) adoptSaved(rec *Record) {
	if s.metaChanged || !rec.Deadline().Equal(s.rec.Deadline()) {
		s.sendCookie = true
	}
	s.adopt(s.token, rec)
}

// applyUnloaded saves changes recorded without a load (see beginWrite) in
// one Store.Apply. saved is false when there is no stored session to apply
// them to: the session is then a new one holding them, for save to insert.
// Called with s.mu held.
func (s *Session) applyUnloaded() (saved bool, err error) {
	token, rotated, ok := s.m.codec.tokenFrom(s.req)
	if ok {
		ctx, cancel := s.m.storeContext(s.ctx)
		defer cancel()
		rec, err := s.m.store.Apply(ctx, storeKey(token), s.pendingChange())
		switch {
		case err == nil:
			s.adopt(token, rec)
			// Still unloaded: the session holds only this request's changes,
			// so a read after the response loads it whole.
			s.values = nil
			// The previous deadline is unknown: re-send the cookie if an idle
			// timeout may have moved it.
			s.sendCookie = rotated || (s.m.cfg.IdleTimeout > 0 && rec.Persistent)
			return true, nil
		case !errors.Is(err, ErrNotFound):
			s.loaded = true
			s.err = fmt.Errorf("session: saving: %w", err)
			return true, s.err
		}
	}
	s.startNew(s.changes, ok)
	return false, nil
}

// touchIfDue slides the idle expiry of an unchanged session, with a narrow
// Store.Touch, once TouchInterval of the idle window has passed. Called
// with s.mu held.
func (s *Session) touchIfDue() error {
	idle := s.m.cfg.IdleTimeout
	if idle <= 0 || s.rec.IdleExpiry.IsZero() {
		return nil
	}
	now := s.now()
	sinceTouch := idle - s.rec.IdleExpiry.Sub(now)
	next := minTime(now.Add(idle), s.rec.Expiry)
	if sinceTouch < s.m.cfg.TouchInterval || !next.After(s.rec.IdleExpiry) {
		return nil
	}
	ctx, cancel := s.m.storeContext(s.ctx)
	defer cancel()
	err := s.m.store.Touch(ctx, storeKey(s.token), next)
	if errors.Is(err, ErrNotFound) {
		s.reset()
		return nil
	}
	if err != nil {
		return fmt.Errorf("session: extending idle expiry: %w", err)
	}
	s.rec.IdleExpiry = next
	s.sendCookie = s.sendCookie || s.persistent
	return nil
}

// insert stores the session under a new token: a new session's first
// save, or a renewal, which then deletes the old token. A renewed session
// starts a fresh lifetime with the same data. Called with s.mu held.
func (s *Session) insert() error {
	ctx, cancel := s.m.storeContext(s.ctx)
	defer cancel()
	rec := s.m.newRecord(s.now())
	token := newToken()
	if s.rec != nil {
		// A renewal moves the session as it is stored now, with this
		// request's changes, so that neither a logout nor a write by
		// another request in the meantime is undone.
		moved, err := s.m.store.Rekey(ctx, storeKey(s.token), storeKey(token), s.pendingChange(), rec)
		if errors.Is(err, ErrNotFound) {
			s.reset() // ended meanwhile: never re-created
			return nil
		}
		if err != nil {
			return fmt.Errorf("session: renewing: %w", err)
		}
		rec = moved
	} else {
		rec.Values = maps.Clone(s.values)
		rec.UserID = s.userID
		rec.Persistent = s.persistent
		if err := s.m.store.Insert(ctx, storeKey(token), rec); err != nil {
			return fmt.Errorf("session: saving new session: %w", err)
		}
		rec.LoadedAt = s.now()
	}
	s.adopt(token, rec)
	s.renew = false
	s.sendCookie = true
	s.clearCookie = false
	return nil
}

// commit saves the session and sets its cookie. The middleware calls it
// once, before the response's headers leave.
func (s *Session) commit(w http.ResponseWriter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.committed = true
	if !s.loaded && len(s.changes) == 0 {
		return nil // never touched: no store call, no cookie
	}
	if s.err != nil && s.errSeen {
		return nil // the handler saw the failure and answered it
	}
	if s.err != nil {
		return s.err
	}
	h := w.Header()
	h.Add("Vary", "Cookie")
	if err := s.save(); err != nil {
		return err
	}
	if s.clearCookie && !s.sendCookie { // destroyed here, or ended by another request
		http.SetCookie(w, s.m.cookies.expired())
		h.Add("Cache-Control", `no-cache="Set-Cookie"`)
		return nil
	}
	if !s.sendCookie || s.rec == nil {
		return nil
	}
	value, err := s.m.codec.encode(s.token)
	if err != nil {
		return err
	}
	now := s.m.now()
	http.SetCookie(w, s.m.cookies.cookie(value, s.persistent, s.rec.Deadline().Add(-s.storeOffset), now))
	h.Add("Cache-Control", `no-cache="Set-Cookie"`)
	return nil
}
