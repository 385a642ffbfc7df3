package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"
)

// ErrCommitted is returned by Session methods that change the session, and
// by Flashes, once the response's headers have left: the change could no
// longer be saved.
var ErrCommitted = errors.New("session: response already sent, change not saved: change the session before writing the response")

// status is where one request's session stands with the store.
type status uint8

const (
	// unread: nothing has been read. Set, Delete and Clear record changes
	// without reading (see state.write), which the save applies to the
	// stored session as it is then.
	unread status = iota
	// absent: the request has no stored session (none was presented, it
	// ended, or it was destroyed). A change makes it a new session, which
	// the save inserts under a new token.
	absent
	// loaded: rec and values are the stored session as read, with this
	// request's pending changes applied to values.
	loaded
	// applied: the save applied changes recorded while unread. rec holds
	// the stored metadata; the values were never read.
	applied
	// failed: the store could not answer; err says why.
	failed
)

// backend is what every request's state works with: the store, the
// settings that decide what to write, and the clock.
type backend struct {
	store  Store
	cfg    Config
	now    func() time.Time
	logger *slog.Logger
	// importer adopts sessions another system issued, or is nil.
	importer importer
}

// importer moves a session that another system issued (express-session,
// see express.go) into the store, for a request that presented that
// system's cookie and no native one.
type importer interface {
	// adopt moves the session legacy names into the store under key, as
	// fresh describes a new session (its lifetime and idle window, in the
	// Manager's clock), in one atomic step that removes it from where it
	// was, and reports what it found.
	adopt(ctx context.Context, legacy, key string, fresh *Record) (imported, error)
}

// imported is what an importer found for a legacy session.
type imported struct {
	// rec is the stored record (LoadedAt set), or nil when there was no
	// live session to move.
	rec *Record
	// taken reports, with no rec, that the session was moved before: by a
	// concurrent request a moment ago, or earlier and ended since. The
	// request then starts no session of its own: its cookie would replace,
	// in the browser, the one the other request's response carries for
	// the moved session, and sign the user out.
	taken bool
	// at is where the legacy cookie was set, as far as the importer learnt.
	at legacyCookie
}

// bound limits one store call to Config.StoreTimeout. A context whose own
// deadline comes sooner already bounds the call, and is used as it is.
func (b *backend) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= b.cfg.StoreTimeout {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, b.cfg.StoreTimeout)
}

func noCancel() {}

// logCorrupt reports a stored session the store could not decode, by the
// first characters of its store key (never the token, which the store key
// does not reveal).
func (b *backend) logCorrupt(ctx context.Context, key string, err error) {
	b.logger.WarnContext(ctx, "session: a stored session cannot be decoded; the request goes on without it and its cookie is cleared",
		"store_key_prefix", key[:min(len(key), 12)], "error", err)
}

// newRecord returns an empty record for a session created at now, in the
// store's clock.
func (b *backend) newRecord(now time.Time) *Record {
	rec := &Record{Persistent: true, Created: now, LastSeen: now, Expiry: now.Add(b.cfg.Lifetime)}
	if b.cfg.IdleTimeout > 0 {
		rec.IdleExpiry = minTime(now.Add(b.cfg.IdleTimeout), rec.Expiry)
	}
	return rec
}

// state is one request's session as the store sees it: what was read,
// what changed, and what the save must send. Every Session of the request
// shares it, under the lock of sessionState.
type state struct {
	b         *backend
	presented credential

	status status
	err    error // why the store could not answer, with status failed
	// closed is set once the save ran: the response's headers have left,
	// so a change could no longer reach the browser.
	closed bool
	// degraded is set by Session.Degrade: the handler answers a failure to
	// read the session itself.
	degraded bool
	// unsaved is a Destroy that did not reach the store: whatever the
	// handler wrote, the response must not say "signed out" while the
	// session lives on, so the save reports it.
	unsaved error

	// token and key identify the stored session: its token and the token's
	// store key, computed once per token. Both are "" while there is none.
	token, key string
	// rec is the stored session's metadata, with loaded and applied. Its
	// Values are moved into values.
	rec *Record
	// offset turns the Manager's clock into the store's (see storeNow).
	offset time.Duration
	// values is the session's values as this request sees them, with
	// loaded and absent.
	values map[string]json.RawMessage
	// unreadable is the key of a stored record the store could not decode
	// (ErrCorrupt): the request has no session, but Destroy still deletes
	// that record.
	unreadable string
	// pending is what the request changed and the store has not yet
	// applied, as one Change; renew asks for a new token at the save.
	pending Change
	renew   bool
	// sent is the deadline and persistence the presented cookie carries,
	// as the load found them, so the save re-sends the cookie only when
	// they move. Unknown (known false) for a session never read.
	sent struct {
		known      bool
		deadline   time.Time
		persistent bool
	}
	// legacy is what the import of the presented legacy cookie found (its
	// rec aside), once it ran: a pointer, so that the requests of everyone
	// else carry no more than that.
	legacy *imported
}

func (s *state) init(b *backend, presented credential) {
	s.b = b
	s.presented = presented
	if presented.token != "" {
		s.token, s.key = presented.token, storeKey(presented.token)
	}
	s.resetPending()
}

// resetPending empties the pending change.
func (s *state) resetPending() {
	s.pending = Change{}
	s.renew = false
}

// dirty reports whether the save has anything to write.
func (s *state) dirty() bool {
	p := &s.pending
	return s.renew || p.changesValues() || p.UserID != nil || p.Persistent != nil || !p.Expiry.IsZero() || p.SessionIdleTimeout != nil
}

// storeNow is the store's clock as far as this request knows it: the time
// the store reported at its last answer, advanced by the Manager's
// monotonic clock. A session not yet stored uses the Manager's clock.
func (s *state) storeNow() time.Time {
	return s.b.now().Add(s.offset)
}

// read makes sure the session's values are known, reading the store if
// nothing has been read yet. It returns the store's failure, if any.
func (s *state) read(ctx context.Context) error {
	switch s.status {
	case failed:
		return s.err
	case loaded, absent:
		return nil
	}
	if s.key == "" {
		if s.presented.legacy != "" && s.b.importer != nil {
			return s.importLegacy(ctx)
		}
		s.becomeAbsent()
		return nil
	}
	ctx, cancel := s.b.bound(ctx)
	defer cancel()
	rec, err := s.b.store.Load(ctx, s.key)
	switch {
	case errors.Is(err, ErrNotFound):
		s.becomeAbsent()
		return nil
	case errors.Is(err, ErrCorrupt):
		s.unreadable = s.key
		s.b.logCorrupt(ctx, s.key, err)
		s.becomeAbsent()
		return nil
	case err != nil:
		return s.fail(fmt.Errorf("session: loading: %w", err))
	}
	values := rec.Values
	s.adopt(rec)
	if s.status == unread {
		s.sent.known, s.sent.deadline, s.sent.persistent = true, rec.deadline(), rec.Persistent
	}
	s.takeValues(values)
	return nil
}

// takeValues makes values, as the store holds them, the session's, with the
// changes recorded before the read on top, as the save will apply them.
func (s *state) takeValues(values map[string]json.RawMessage) {
	s.values = values
	if s.values == nil || s.pending.Clear {
		s.values = map[string]json.RawMessage{}
	}
	for _, k := range s.pending.Delete {
		delete(s.values, k)
	}
	maps.Copy(s.values, s.pending.Set)
	s.status = loaded
}

// importLegacy adopts the session of the request's legacy cookie under a
// new token, as a new sign-in would: the response then sets the native
// cookie and expires the legacy one.
func (s *state) importLegacy(ctx context.Context) error {
	token := newToken()
	key := storeKey(token)
	ctx, cancel := s.b.bound(ctx)
	defer cancel()
	found, err := s.b.importer.adopt(ctx, s.presented.legacy, key, s.b.newRecord(s.storeNow()))
	if err != nil {
		return s.fail(fmt.Errorf("session: importing a legacy session: %w", err))
	}
	rec := found.rec
	found.rec = nil
	s.legacy = &found
	if rec == nil {
		s.becomeAbsent()
		return nil
	}
	values := rec.Values
	s.adopt(rec)
	s.token, s.key = token, key
	s.takeValues(values)
	return nil
}

// fail records that the store could not answer.
func (s *state) fail(err error) error {
	s.status, s.err = failed, err
	return err
}

// adopt makes rec, as the store just returned it, the stored session's
// metadata. Its values, if any, are the caller's to take.
func (s *state) adopt(rec *Record) {
	s.offset = rec.LoadedAt.Sub(s.b.now())
	rec.Values = nil
	s.rec = rec
}

// becomeAbsent makes the session one the store does not hold, keeping
// the changes recorded so far as its values: a request that wrote to a
// session that ended meanwhile starts a new one holding its writes.
func (s *state) becomeAbsent() {
	s.token, s.key, s.rec, s.offset = "", "", nil, 0
	s.values = maps.Clone(s.pending.Set)
	if s.values == nil {
		s.values = map[string]json.RawMessage{}
	}
	s.pending.Clear, s.pending.Delete, s.renew = false, nil, false
	s.status = absent
}

// becomeAbsentForRace is becomeAbsent for a session another request ended
// while this one was changing it: only the values this request set go to
// the new session. Who the user was, and any lifetime or persistence
// change, belonged to the ended session; carrying them over would sign a
// user back in after a logout or a revocation.
func (s *state) becomeAbsentForRace() {
	set := s.pending.Set
	s.resetPending()
	s.pending.Set = set
	s.becomeAbsent()
}

// write prepares a change to the values (Set, Delete, Clear). It reads
// nothing: a handler that only writes costs one store call, at the save,
// where the store enforces Config.MaxSize on the session as it is then.
func (s *state) write() error {
	switch {
	case s.closed:
		return ErrCommitted
	case s.status == failed:
		return s.err
	}
	return nil
}

// change prepares a change that needs the stored session (its metadata, or
// a value to decide on): it reads first.
func (s *state) change(ctx context.Context) error {
	if s.closed {
		return ErrCommitted
	}
	return s.read(ctx)
}

func (s *state) set(key string, value json.RawMessage) {
	if s.pending.Set == nil {
		s.pending.Set = map[string]json.RawMessage{}
	}
	s.pending.Set[key] = value
	if s.values != nil {
		s.values[key] = value
	}
}

func (s *state) delete(key string) {
	delete(s.pending.Set, key)
	if !slices.Contains(s.pending.Delete, key) {
		s.pending.Delete = append(s.pending.Delete, key)
	}
	if s.values != nil {
		delete(s.values, key)
	}
}

func (s *state) clear() {
	s.pending.Clear, s.pending.Delete = true, nil
	clear(s.pending.Set)
	if s.values != nil {
		clear(s.values)
	}
}

// userID and persistent are the session's metadata as the save will leave
// them. Called after read.
func (s *state) userID() string {
	stored := ""
	if s.rec != nil {
		stored = s.rec.UserID
	}
	return pendingOr(s.pending.UserID, stored)
}

func (s *state) persistent() bool {
	stored := true // a new session's cookie is persistent
	if s.rec != nil {
		stored = s.rec.Persistent
	}
	return pendingOr(s.pending.Persistent, stored)
}

// pendingOr is what a pending change of one metadata field leaves: the new
// value when there is one, else the stored value.
func pendingOr[T any](pending *T, stored T) T {
	if pending != nil {
		return *pending
	}
	return stored
}

// deadline is when the session ends if nothing else happens, in the
// store's clock. Called after read.
func (s *state) deadline() time.Time {
	if s.rec == nil {
		return s.b.newRecord(s.storeNow()).deadline()
	}
	return s.rec.deadline()
}

// destroy deletes the stored session, if any, without reading it first.
// A Destroy that does not reach the store fails the response too, even if
// the handler ignores its error (see unsaved).
func (s *state) destroy(ctx context.Context) error {
	if s.status == failed {
		s.unsaved = s.err
		return s.err
	}
	if s.key == "" {
		// A legacy cookie's session is imported first, so that signing
		// out ends it for good rather than leaving it to be imported by
		// the next request that presents the cookie.
		if err := s.read(ctx); err != nil {
			s.unsaved = err
			return err
		}
	}
	for _, key := range []string{s.key, s.unreadable} {
		if key == "" {
			continue
		}
		bounded, cancel := s.b.bound(ctx)
		_, err := s.b.store.Destroy(bounded, key)
		cancel()
		if err != nil {
			s.unsaved = fmt.Errorf("session: destroying: %w", err)
			return s.unsaved
		}
	}
	s.unreadable = ""
	s.resetPending()
	s.becomeAbsent()
	return nil
}

// update runs fn on the stored session with the store holding every other
// writer off it (Store.Modify), together with the request's pending
// changes. A session not yet stored, or due a new token, is stored first,
// which needs the response; a stored one can be updated after it, as a
// WebSocket connection does long after its handshake.
func (s *state) update(ctx context.Context, fn func(*Record) error) error {
	if err := s.read(ctx); err != nil {
		return err
	}
	if s.rec == nil || s.renew {
		if s.closed {
			return ErrCommitted // its new cookie could no longer be sent
		}
		if err := s.store(ctx); err != nil {
			return err
		}
		if s.rec == nil {
			return fmt.Errorf("session: updating: the session ended meanwhile: %w", ErrNotFound)
		}
	}
	pending := s.pending
	pending.IdleTimeout = s.b.cfg.IdleTimeout
	ctx, cancel := s.b.bound(ctx)
	defer cancel()
	rec, err := s.b.store.Modify(ctx, s.key, func(rec *Record) error {
		if err := pending.applyTo(rec, rec.LoadedAt); err != nil {
			return err
		}
		return fn(rec)
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
		// Ended by another request (logout, renewal, revocation) since
		// this one read it. Never re-created: the update goes to a new,
		// anonymous session, as a racing write does (see apply).
		s.becomeAbsentForRace()
		if s.closed {
			return fmt.Errorf("session: updating: the session ended meanwhile: %w", ErrNotFound)
		}
		return s.update(ctx, fn)
	}
	if err != nil {
		return err
	}
	values := rec.Values
	s.adopt(rec)
	s.values = values
	s.resetPending()
	return nil
}

// save writes what the request changed, once, before the response's
// headers leave: one Store.Apply of the pending changes, an Insert for a
// new session, a Rekey for a renewal, or a narrow touch of the idle expiry
// when only that is due.
func (s *state) save(ctx context.Context) error {
	s.closed = true
	if s.unsaved != nil {
		return s.unsaved
	}
	switch s.status {
	case failed:
		return s.err
	case unread:
		if !s.dirty() {
			return nil // never touched: no store call
		}
		if s.key != "" {
			return s.apply(ctx)
		}
		// No stored session, unless a legacy cookie brings one: the
		// changes then apply to it, as they would to a native session.
		if err := s.read(ctx); err != nil {
			return err
		}
	}
	if s.rec == nil || s.renew {
		if !s.dirty() {
			return nil // an untouched new session is not worth storing
		}
		return s.store(ctx)
	}
	if s.dirty() {
		return s.apply(ctx)
	}
	return s.touchIfDue(ctx)
}

// apply sends the pending changes as one Store.Apply.
func (s *state) apply(ctx context.Context) error {
	change := s.pending
	change.IdleTimeout = s.b.cfg.IdleTimeout
	change.MaxSize = s.b.cfg.MaxSize
	bounded, cancel := s.b.bound(ctx)
	defer cancel()
	rec, err := s.b.store.Apply(bounded, s.key, change)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
		// Destroyed, renewed or revoked by another request since this one
		// began: never re-created. A request that set values starts a new,
		// anonymous session holding only those; one that did not leaves no
		// session, and its response clears the cookie.
		if errors.Is(err, ErrCorrupt) {
			s.unreadable = s.key
			s.b.logCorrupt(ctx, s.key, err)
		}
		s.becomeAbsentForRace()
		if s.dirty() {
			return s.store(ctx)
		}
		return nil
	case err != nil:
		return fmt.Errorf("session: saving: %w", err)
	}
	if s.status == unread {
		s.status = applied
	}
	s.adopt(rec)
	s.resetPending()
	return nil
}

// touchIfDue slides the idle expiry of an unchanged session, with an Apply
// that changes no value, once TouchInterval of the idle window has passed.
func (s *state) touchIfDue(ctx context.Context) error {
	idle := s.b.cfg.IdleTimeout
	if s.rec.IdleTimeout > 0 {
		idle = s.rec.IdleTimeout
	}
	if idle <= 0 || s.rec.IdleExpiry.IsZero() {
		return nil
	}
	now := s.storeNow()
	sinceTouch := idle - s.rec.IdleExpiry.Sub(now)
	next := minTime(now.Add(idle), s.rec.Expiry)
	if sinceTouch < s.b.cfg.TouchInterval || !next.After(s.rec.IdleExpiry) {
		return nil
	}
	return s.apply(ctx)
}

// store inserts the session under a new token: a new session's first
// save, or a renewal, which moves the stored session (Store.Rekey) so that
// neither a logout nor a write by another request meanwhile is undone.
func (s *state) store(ctx context.Context) error {
	if s.rec == nil && s.legacy != nil && s.legacy.taken {
		s.b.logger.DebugContext(ctx, "session: not starting a session on a request whose legacy cookie's session another request took over; its changes are not saved")
		return nil
	}
	token := newToken()
	key := storeKey(token)
	fresh := s.b.newRecord(s.storeNow())
	ctx, cancel := s.b.bound(ctx)
	defer cancel()
	if s.rec != nil {
		change := s.pending
		change.MaxSize = s.b.cfg.MaxSize
		if !s.signingIn() {
			// A renewal keeps the session's absolute deadline: renewing
			// every so often must not keep a session alive for ever. Only
			// a sign-in starts a new lifetime.
			fresh.Expiry = time.Time{}
		}
		if own := s.rec.IdleTimeout; own > 0 {
			fresh.IdleExpiry = fresh.Created.Add(own)
		}
		moved, err := s.b.store.Rekey(ctx, s.key, key, change, fresh)
		if errors.Is(err, ErrNotFound) {
			s.resetPending()
			s.becomeAbsent() // ended meanwhile: never re-created
			return nil
		}
		if err != nil {
			return fmt.Errorf("session: renewing: %w", err)
		}
		values := moved.Values
		s.adopt(moved)
		s.values = values
	} else {
		fresh.Values = maps.Clone(s.values)
		fresh.UserID = s.userID()
		fresh.Persistent = s.persistent()
		if limit := s.b.cfg.MaxSize; limit > 0 && encodedSize(fresh.Values) > limit {
			return fmt.Errorf("session: saving new session: %w", ErrTooLarge)
		}
		if err := s.b.store.Insert(ctx, key, fresh); err != nil {
			return fmt.Errorf("session: saving new session: %w", err)
		}
		fresh.LoadedAt = s.storeNow()
		s.adopt(fresh)
	}
	s.token, s.key = token, key
	s.status = loaded
	s.resetPending()
	return nil
}

// signingIn reports whether the pending change gives the stored session a
// user it did not have: a sign-in, which starts a new absolute lifetime.
func (s *state) signingIn() bool {
	user := s.pending.UserID
	return user != nil && *user != "" && *user != s.rec.UserID
}

// cookie is what the save leaves for the response: the cookie to set, or
// whether to expire the one the request presented.
type cookie struct {
	token      string
	persistent bool
	deadline   time.Time // in the Manager's clock
	send       bool      // set the cookie: new token, re-signed, or moved deadline
	expire     bool      // expire the presented cookie: its session ended
	// expireLegacy expires the legacy cookie the request presented: its
	// session was imported, or is gone. legacyAt is where it was set.
	expireLegacy bool
	legacyAt     legacyCookie
}

// outcome derives the cookie from the state after the save.
func (s *state) outcome() cookie {
	legacy := s.presented.legacy != "" && s.b.importer != nil
	var legacyAt legacyCookie
	if s.legacy != nil {
		legacyAt = s.legacy.at
	}
	if s.token == "" {
		// The presented cookie's session ended, or the cookie did not
		// verify at all: either way the browser should stop sending it.
		return cookie{expire: s.presented.token != "" || s.presented.refused, expireLegacy: legacy, legacyAt: legacyAt}
	}
	if s.rec == nil {
		return cookie{}
	}
	c := cookie{token: s.token, persistent: s.rec.Persistent, deadline: s.rec.deadline().Add(-s.offset), expireLegacy: legacy, legacyAt: legacyAt}
	switch {
	case s.token != s.presented.token, s.presented.rotated:
		c.send = true
	case s.sent.known:
		c.send = s.rec.Persistent != s.sent.persistent || (s.rec.Persistent && !s.rec.deadline().Equal(s.sent.deadline))
	default:
		// Saved without a read: the deadline the browser holds is unknown,
		// and moved only if the write slid an idle expiry.
		c.send = s.rec.Persistent && !s.rec.IdleExpiry.IsZero()
	}
	return c
}
