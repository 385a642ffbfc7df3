package session

import (
	"cmp"
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
	// users is the store's user index, or nil.
	users UserIndex
	// events tells the WithEvents hook, or is nil.
	events *eventQueue
	// observer is told what happens (WithObserver), or is nil.
	observer Observer
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

// emit tells the Observer and the WithEvents hook of one event for each
// session in infos.
func (b *backend) emit(kind string, infos ...Info) {
	if b.observer == nil && b.events == nil {
		return
	}
	now := b.now()
	for _, info := range infos {
		if b.observer != nil {
			b.observer.Event(Event{Kind: kind, Session: info, Time: now})
		}
		b.events.emit(kind, now, info)
	}
}

// lastSeenInterval is how often a session read but not changed has its
// LastSeen moved, when no idle timeout slides it more often: a "your
// devices" page shows "active 5 minutes ago" at worst this stale, for one
// small write per session per interval.
const lastSeenInterval = 5 * time.Minute

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
	// device describes the client, for the records this request creates.
	device device

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
	// lifetime is the session's own lifetime, asked for by SetLifetime and
	// set at the save, from the session's creation or its sign-in.
	lifetime struct{ absolute, idle time.Duration }
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

// device is what a session records of the client that created or renewed
// it: its user agent and address (see Config.TrustedProxies).
type device struct{ userAgent, ip string }

func (s *state) init(b *backend, presented credential, client device) {
	s.b = b
	s.presented = presented
	s.device = client
	if presented.token != "" {
		s.token, s.key = presented.token, storeKey(presented.token)
	}
	s.resetPending()
}

// resetPending empties the pending change.
func (s *state) resetPending() {
	s.pending = Change{}
	s.renew = false
	s.lifetime.absolute, s.lifetime.idle = 0, 0
}

// dirty reports whether the save has anything to write.
func (s *state) dirty() bool {
	p := &s.pending
	return s.renew || p.changesValues() || p.UserID != nil || p.Persistent != nil || s.lifetime.absolute > 0 || s.lifetime.idle > 0
}

// fresh returns a new record for this request's client, created now.
func (s *state) fresh() *Record {
	rec := s.b.newRecord(s.storeNow())
	rec.UserAgent, rec.IP = s.device.userAgent, s.device.ip
	return rec
}

// withLifetime puts the lifetime SetLifetime asked for into rec, counted
// from base: a new session's creation, a sign-in, or for a stored session
// its own creation.
func (s *state) withLifetime(change *Change, base time.Time) {
	if s.lifetime.absolute > 0 {
		change.Expiry = base.Add(s.lifetime.absolute)
	}
	if s.lifetime.idle > 0 {
		idle := s.lifetime.idle
		change.SessionIdleTimeout = &idle
	}
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
		if s.b.observer != nil && s.presented.token != "" {
			s.b.observer.TokenRefused(ctx, "unknown")
		}
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

// gone reports a store's answer that the session under the request's key
// is no more (ErrNotFound) or cannot be read (ErrCorrupt).
func gone(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt)
}

// lost makes the session absent after a change found it gone: ended by
// another request since this one began (a logout, a renewal, a
// revocation), expired, or unreadable, which is logged. It is never
// re-created: the request keeps only the values it set (see
// becomeAbsentForRace).
func (s *state) lost(ctx context.Context, err error) {
	if errors.Is(err, ErrCorrupt) {
		s.unreadable = s.key
		s.b.logCorrupt(ctx, s.key, err)
	}
	s.becomeAbsentForRace()
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
	rec := s.rec
	if rec == nil {
		rec = s.b.newRecord(s.storeNow())
	}
	var lifetime Change
	s.withLifetime(&lifetime, rec.Created)
	if lifetime.Expiry.IsZero() && lifetime.SessionIdleTimeout == nil {
		return rec.deadline()
	}
	future := *rec
	lifetime.IdleTimeout = s.b.cfg.IdleTimeout
	_ = lifetime.applyTo(&future, s.storeNow())
	return future.deadline()
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
		info, err := s.b.store.Destroy(bounded, key)
		cancel()
		if err != nil {
			s.unsaved = fmt.Errorf("session: destroying: %w", err)
			return s.unsaved
		}
		if info != nil {
			s.b.emit("destroyed", *info)
		}
	}
	s.unreadable = ""
	s.resetPending()
	s.becomeAbsent()
	return nil
}

// update runs fn on the stored session with the store holding every other
// writer off it (Store.Modify), together with the request's pending
// changes. A session not read yet is read under that lock, in the same
// step: no separate load before it. A session not stored yet, or one that
// ended meanwhile, becomes a new session with fn applied before it is
// inserted, which needs no lock since no other request knows it. A stored
// session can be updated after the response has started, as a WebSocket
// connection does long after its handshake; one that would need a new
// cookie cannot.
func (s *state) update(ctx context.Context, fn func(*Record) error) error {
	if s.status == unread && s.key != "" && !s.renew {
		if found, err := s.modify(ctx, fn); found || err != nil {
			return err
		}
	}
	if err := s.read(ctx); err != nil {
		return err
	}
	if s.renew && s.rec != nil {
		if s.closed {
			return ErrCommitted // its new cookie could no longer be sent
		}
		if err := s.store(ctx); err != nil {
			return err
		}
	}
	if s.rec != nil {
		if found, err := s.modify(ctx, fn); found || err != nil {
			return err
		}
	}
	if s.closed {
		return fmt.Errorf("session: updating: no session to update, and the response has started: %w", ErrCommitted)
	}
	return s.insert(ctx, fn)
}

// modify is update's Store.Modify of the stored session. found is false
// when the session is gone (ended by another request since this one began,
// or expired, or unreadable): the state is then absent, holding only this
// request's values, as after a racing write (see apply).
func (s *state) modify(ctx context.Context, fn func(*Record) error) (found bool, err error) {
	pending := s.pending
	pending.IdleTimeout = s.b.cfg.IdleTimeout
	pending.TouchInterval = s.b.cfg.TouchInterval
	unread := s.status == unread
	bounded, cancel := s.b.bound(ctx)
	defer cancel()
	rec, err := s.b.store.Modify(bounded, s.key, func(rec *Record) error {
		if unread {
			s.sent.known, s.sent.deadline, s.sent.persistent = true, rec.deadline(), rec.Persistent
		}
		s.withLifetime(&pending, rec.Created)
		if err := pending.applyTo(rec, rec.LoadedAt); err != nil {
			return err
		}
		return fn(rec)
	})
	switch {
	case gone(err):
		s.lost(ctx, err)
		return false, nil
	case err != nil && unread && !errors.Is(err, ErrTooLarge) && !errors.As(err, new(*decodeError)):
		// The session could not be read: as a failed load, the error
		// handler answers unless the handler degrades.
		return true, s.fail(fmt.Errorf("session: updating: %w", err))
	case err != nil:
		return true, err
	}
	values := rec.Values
	s.adopt(rec)
	s.resetPending()
	s.takeValues(values)
	return true, nil
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
	change.TouchInterval = s.b.cfg.TouchInterval
	change.MaxSize = s.b.cfg.MaxSize
	if s.rec != nil {
		s.withLifetime(&change, s.rec.Created)
	}
	bounded, cancel := s.b.bound(ctx)
	defer cancel()
	rec, err := s.b.store.Apply(bounded, s.key, change)
	switch {
	case gone(err):
		// A request that set values starts a new session holding only
		// those; one that did not leaves none, and its response clears the
		// cookie.
		s.lost(ctx, err)
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
// that changes no value, once TouchInterval of the idle window has passed;
// without an idle timeout it moves LastSeen once per lastSeenInterval.
func (s *state) touchIfDue(ctx context.Context) error {
	now := s.storeNow()
	idle := cmp.Or(s.rec.IdleTimeout, s.b.cfg.IdleTimeout)
	if idle <= 0 || s.rec.IdleExpiry.IsZero() {
		if now.Sub(s.rec.LastSeen) < lastSeenInterval {
			return nil
		}
		return s.apply(ctx)
	}
	sinceTouch := idle - s.rec.IdleExpiry.Sub(now)
	next := minTime(now.Add(idle), s.rec.Expiry)
	if sinceTouch < s.b.cfg.TouchInterval || !next.After(s.rec.IdleExpiry) {
		return nil
	}
	return s.apply(ctx)
}

// store gives the session a new token: a new session's first save, or a
// renewal, which moves the stored session (Store.Rekey) so that neither a
// logout nor a write by another request meanwhile is undone.
func (s *state) store(ctx context.Context) error {
	if s.rec == nil {
		if s.legacy != nil && s.legacy.taken {
			s.b.logger.DebugContext(ctx, "session: not starting a session on a request whose legacy cookie's session another request took over; its changes are not saved")
			return nil
		}
		return s.insert(ctx, nil)
	}
	token := newToken()
	key := storeKey(token)
	fresh := s.fresh()
	change := s.pending
	change.MaxSize = s.b.cfg.MaxSize
	signingIn := s.signingIn()
	if signingIn {
		s.withLifetime(&change, fresh.Created)
	} else {
		// A renewal keeps the session's absolute deadline: renewing every so
		// often must not keep a session alive for ever. Only a sign-in
		// starts a new lifetime.
		// It is the same sign-in on the same device, so it keeps the
		// time and device of that sign-in too, which a "your devices"
		// page shows.
		fresh.Expiry = time.Time{}
		s.withLifetime(&change, s.rec.Created)
	}
	if !change.Expiry.IsZero() {
		fresh.Expiry = change.Expiry
	}
	idle := s.rec.IdleTimeout
	if change.SessionIdleTimeout != nil {
		idle = *change.SessionIdleTimeout
	}
	if idle > 0 {
		fresh.IdleExpiry = fresh.Created.Add(idle)
	}
	if !signingIn {
		fresh.Created, fresh.UserAgent, fresh.IP = s.rec.Created, s.rec.UserAgent, s.rec.IP
	}
	bounded, cancel := s.b.bound(ctx)
	defer cancel()
	moved, err := s.b.store.Rekey(bounded, s.key, key, change, fresh)
	switch {
	case gone(err):
		s.lost(ctx, err)
		if s.dirty() {
			return s.insert(ctx, nil)
		}
		return nil
	case err != nil:
		return fmt.Errorf("session: renewing: %w", err)
	}
	values := moved.Values
	s.adopt(moved)
	s.token, s.key = token, key
	s.resetPending()
	s.takeValues(values)
	s.b.emit("renewed", moved.info(key))
	if signingIn {
		s.signedIn(ctx, moved.info(key))
	}
	return nil
}

// signedIn tells of a sign-in, and keeps its user within Config.MaxPerUser
// by ending the least recently seen of the user's other sessions.
func (s *state) signedIn(ctx context.Context, info Info) {
	s.b.emit("signed-in", info)
	if s.b.cfg.MaxPerUser <= 0 || s.b.users == nil {
		return
	}
	bounded, cancel := s.b.bound(ctx)
	defer cancel()
	evicted, err := s.b.users.TrimUser(bounded, info.UserID, s.b.cfg.MaxPerUser)
	if err != nil {
		// The sign-in itself succeeded; the next one trims again.
		s.b.logger.WarnContext(ctx, "session: could not end the oldest sessions of a user over SESSION_MAX_PER_USER", "error", err)
		return
	}
	s.b.emit("evicted", evicted...)
}

// insert stores the session, not stored yet, under a new token, with fn
// applied to it first when fn is not nil.
func (s *state) insert(ctx context.Context, fn func(*Record) error) error {
	token := newToken()
	key := storeKey(token)
	fresh := s.fresh()
	var lifetime Change
	s.withLifetime(&lifetime, fresh.Created)
	if !lifetime.Expiry.IsZero() {
		fresh.Expiry = lifetime.Expiry
	}
	if lifetime.SessionIdleTimeout != nil {
		fresh.IdleTimeout = *lifetime.SessionIdleTimeout
		fresh.IdleExpiry = minTime(fresh.Created.Add(fresh.IdleTimeout), fresh.Expiry)
	}
	fresh.Values = maps.Clone(s.values)
	if fresh.Values == nil {
		fresh.Values = map[string]json.RawMessage{}
	}
	fresh.UserID = s.userID()
	fresh.Persistent = s.persistent()
	if fn != nil {
		if err := fn(fresh); err != nil {
			return err
		}
	}
	if limit := s.b.cfg.MaxSize; limit > 0 && encodedSize(fresh.Values) > limit {
		return fmt.Errorf("session: saving new session: %w", ErrTooLarge)
	}
	bounded, cancel := s.b.bound(ctx)
	defer cancel()
	if err := s.b.store.Insert(bounded, key, fresh); err != nil {
		return fmt.Errorf("session: saving new session: %w", err)
	}
	values := fresh.Values
	fresh.LoadedAt = s.storeNow()
	s.adopt(fresh)
	s.token, s.key = token, key
	s.resetPending()
	s.takeValues(values)
	s.b.emit("created", fresh.info(key))
	if fresh.UserID != "" {
		s.signedIn(ctx, fresh.info(key))
	}
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
		return cookie{expire: s.presented.token != "" || s.presented.refusal != "", expireLegacy: legacy, legacyAt: legacyAt}
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
