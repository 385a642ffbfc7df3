package session

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"time"
)

// Store keeps session records. The Manager is its only caller; handlers never
// see it. This page is all a store author needs: the required interface, the
// optional ones (UserIndex, Pruner), the types they exchange and the errors
// they return. Package storetest checks an implementation against it.
//
// The contract every implementation honours:
//
//   - Keys are the hex SHA-256 of a session token. A Store never sees a token,
//     so a leak of its contents lets nobody hijack a session.
//   - A record is live while the store's clock is before Expiry and, when
//     IdleExpiry is set, before IdleExpiry. An expired record is the same as
//     a missing one: Load, Apply, Rekey and Modify return ErrNotFound for it.
//     Stores compare expiry with their own clock (PostgreSQL: the database's
//     now()) and report it in Record.LoadedAt, so that the Manager computes
//     deadlines of a stored session from that same clock.
//   - Apply changes the record as it is in the store at that moment, not as
//     the caller last read it: it removes and sets only the keys the Change
//     names, atomically. Two requests that change different keys of one
//     session therefore both land, whatever their order; nothing is ever
//     overwritten blindly, and a record deleted meanwhile (logout, renewal)
//     is never re-created.
//   - Insert never overwrites: an existing key is ErrConflict.
//   - A record that exists but cannot be decoded (edited by hand, written
//     by another version) is ErrCorrupt, wrapped in an error saying why,
//     from any method that must read it: the Manager treats it as no
//     session and logs it once, and Destroy, DestroyUser and ListUser still
//     work around it.
//   - ErrNotFound, ErrConflict, ErrTooLarge and ErrCorrupt are the expected
//     failures.
//     Any other error means the store could not answer; wrap ErrUnavailable
//     in it when the backend is unreachable (connection refused, timeout) so
//     that the Manager answers 503 instead of 500.
//   - Every method takes a context that carries the request's deadline and
//     returns promptly once it is done.
//   - A Store is safe for concurrent use by multiple goroutines, and by
//     multiple processes where the backend is shared.
type Store interface {
	// Load returns the live record under key, with LoadedAt set to the
	// store's clock, or ErrNotFound.
	Load(ctx context.Context, key string) (*Record, error)

	// Insert stores a new record under key. It returns ErrConflict if key
	// exists.
	Insert(ctx context.Context, key string, rec *Record) error

	// Apply applies change atomically to the live record under key (see
	// Change) and returns the record as stored, with LoadedAt set to the
	// store's clock but without its Values (nil): the caller knows its own
	// changes, and sending the whole session back would make every write
	// cost twice its size. It returns ErrNotFound if there is no live
	// record, and ErrTooLarge, storing nothing, if the change would take
	// the values over change.MaxSize.
	//
	// A change that sets, deletes and clears nothing only slides the idle
	// expiry and LastSeen (a touch): a store should then leave the values
	// unwritten, which is what keeps sliding expiry cheap.
	Apply(ctx context.Context, key string, change Change) (*Record, error)

	// Rekey moves the live record under oldKey to newKey in one atomic step
	// (a renewal), applying change to it as it is at that moment and giving
	// it fresh's Created, UserAgent and IP, fresh's Expiry unless that is
	// zero (a renewal that keeps the session's absolute deadline), and
	// fresh's IdleExpiry, never past Expiry. It returns
	// the moved record, Values included, with LoadedAt set, or ErrNotFound
	// if no live record is under oldKey: a session deleted meanwhile is never
	// re-created, and a change another request applied meanwhile moves with
	// it.
	Rekey(ctx context.Context, oldKey, newKey string, change Change, fresh *Record) (*Record, error)

	// Modify runs fn on the live record under key, then stores what fn left
	// in it (Values, UserID, Persistent and the deadlines) and sets
	// LastSeen, only if no other writer changed the record in between: a
	// store either locks the record until fn returns (the memory store;
	// PostgreSQL: one transaction with the row locked), or checks that the
	// record is still the version fn saw and, when it is not, runs fn again
	// on the record as it is now (Redis; PostgreSQL on a record it wrote
	// itself last). fn may therefore run more than once; only its last run
	// counts. If fn returns an error nothing is stored and Modify returns
	// that error. It returns the stored record, with LoadedAt set, or
	// ErrNotFound without calling fn.
	Modify(ctx context.Context, key string, fn func(*Record) error) (*Record, error)

	// Destroy removes the record under key, live or expired, and returns its
	// summary, or nil if there was none: deleting a missing key is not an
	// error.
	Destroy(ctx context.Context, key string) (*Info, error)
}

// UserIndex is implemented by stores that find sessions by their user
// without scanning every session. Manager.RevokeUser, Manager.UserSessions
// and Session.RevokeOthers need it and return ErrNotSupported from a store
// without it. An empty userID matches nothing in every method: anonymous
// sessions are nobody's, and are never listed or revoked in bulk.
type UserIndex interface {
	// ListUser returns a summary of every live record of userID, newest
	// first, without their values.
	ListUser(ctx context.Context, userID string) ([]Info, error)

	// DestroyUser removes every record of userID except the one under keep
	// ("" keeps none), in one atomic step, and returns what it removed.
	DestroyUser(ctx context.Context, userID, keep string) ([]Info, error)

	// TrimUser removes the records of userID beyond the max most recently
	// seen (by LastSeen, then Created), and returns what it removed. When
	// several run at once for one user, at most max live records remain
	// once they all return.
	TrimUser(ctx context.Context, userID string, max int) ([]Info, error)
}

// Pruner is implemented by stores that delete expired records only when
// told to. The Manager calls Prune every Config.PruneInterval, each call
// bounded by Config.StoreTimeout, until a call returns fewer than limit
// records. A store whose backend expires records by itself (Redis) uses it
// to drop what it indexes beside them.
type Pruner interface {
	// Prune deletes at most limit expired records and returns what it
	// deleted. A store shared between processes may return none at once
	// when another process is pruning.
	Prune(ctx context.Context, limit int) ([]Info, error)
}

// Record is one session as a Store keeps it.
type Record struct {
	// Values holds each session value as JSON, keyed by name. A Store may
	// normalise the JSON (PostgreSQL's jsonb reorders object keys and drops
	// spaces), so values come back equal as JSON, not byte for byte.
	// Neither the Manager nor a Store modifies a RawMessage in place; they
	// replace it.
	Values map[string]json.RawMessage
	// UserID is the user the session belongs to, or "" for an anonymous
	// session. A UserIndex indexes it.
	UserID string
	// Persistent reports whether the cookie outlives the browser session
	// (remember-me). It is false for a browser-session cookie.
	Persistent bool
	// Created is when the session was first stored, or last renewed.
	Created time.Time
	// Expiry is the absolute deadline: the session ends then however active
	// it is.
	Expiry time.Time
	// IdleTimeout is the session's own idle timeout, or 0 to follow the
	// Manager's configuration (Change.IdleTimeout).
	IdleTimeout time.Duration
	// IdleExpiry is the sliding deadline, or the zero time when the session
	// has no idle timeout.
	IdleExpiry time.Time
	// LastSeen is the store's clock at the last Apply, Rekey or Modify, or
	// Created when there was none.
	LastSeen time.Time
	// UserAgent and IP describe the device that created or last renewed the
	// session, for a "your devices" page.
	UserAgent, IP string
	// LoadedAt is the store's clock when the record was read or written.
	// Stores ignore it on writes.
	LoadedAt time.Time
}

// deadline returns when the record expires: the earlier of Expiry and a
// non-zero IdleExpiry.
func (r *Record) deadline() time.Time {
	if !r.IdleExpiry.IsZero() && r.IdleExpiry.Before(r.Expiry) {
		return r.IdleExpiry
	}
	return r.Expiry
}

// clone copies r with a map of its own, so that a store and its callers
// never share one. The JSON bytes are shared: nobody modifies them in
// place (see Values).
func clone(r *Record) *Record {
	c := *r
	c.Values = maps.Clone(r.Values)
	if c.Values == nil {
		c.Values = map[string]json.RawMessage{}
	}
	return &c
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// info summarises r, stored under key.
func (r *Record) info(key string) Info {
	return Info{Key: key, UserID: r.UserID, Created: r.Created, LastSeen: r.LastSeen, Expiry: r.Expiry,
		IdleExpiry: r.IdleExpiry, UserAgent: r.UserAgent, IP: r.IP}
}

// Change is what one request changed in a session, applied by Store.Apply
// and Store.Rekey in this order: Clear, Delete, Set, the metadata, the size
// check, then the deadlines.
type Change struct {
	// Clear removes every value.
	Clear bool
	// Delete removes these keys.
	Delete []string
	// Set stores these values, replacing any under the same key.
	Set map[string]json.RawMessage
	// UserID, when not nil, sets Record.UserID.
	UserID *string
	// Persistent, when not nil, sets Record.Persistent.
	Persistent *bool
	// Expiry, when not zero, replaces Record.Expiry: a lifetime of the
	// session's own.
	Expiry time.Time
	// SessionIdleTimeout, when not nil, replaces Record.IdleTimeout.
	SessionIdleTimeout *time.Duration
	// IdleTimeout is the configured idle timeout, for records without one
	// of their own. Apply slides IdleExpiry to the store's clock plus the
	// record's IdleTimeout, or this when that is 0, never past Expiry; with
	// neither it leaves IdleExpiry alone. Rekey ignores it: its fresh
	// record brings the deadlines.
	IdleTimeout time.Duration
	// TouchInterval, when positive, holds the slide back until at least
	// this much of the idle window has passed: a write soon after the last
	// slide leaves IdleExpiry as it is (unless the slide would bring it
	// forward, as a shorter idle timeout does). Writes to a busy session then
	// change no indexed column, which keeps them cheap (PostgreSQL: HOT
	// updates) and the cookie unchanged.
	TouchInterval time.Duration
	// MaxSize, when positive, makes the store refuse with ErrTooLarge, and
	// store nothing, when a change that sets values would leave them
	// encoding to more than MaxSize bytes as a JSON object (as the store
	// encodes them, so stores may differ by a few bytes per value).
	MaxSize int
}

// changesValues reports whether c sets, deletes or clears any value.
func (c *Change) changesValues() bool {
	return c.Clear || len(c.Delete) > 0 || len(c.Set) > 0
}

// touchOnly reports whether c changes nothing but the idle expiry and
// LastSeen: a touch, which a store should make without rewriting values.
func (c *Change) touchOnly() bool {
	return !c.changesValues() && c.UserID == nil && c.Persistent == nil && c.Expiry.IsZero() && c.SessionIdleTimeout == nil
}

// applyTo applies c to rec as Store.Apply does, given the store's clock
// now, for stores that keep records in memory. It returns ErrTooLarge,
// changing nothing, when the values would exceed MaxSize.
func (c *Change) applyTo(rec *Record, now time.Time) error {
	if c.MaxSize > 0 && len(c.Set) > 0 && c.sizeAfter(rec.Values) > c.MaxSize {
		return ErrTooLarge
	}
	if rec.Values == nil || c.Clear {
		rec.Values = map[string]json.RawMessage{}
	}
	for _, key := range c.Delete {
		delete(rec.Values, key)
	}
	maps.Copy(rec.Values, c.Set)
	if c.UserID != nil {
		rec.UserID = *c.UserID
	}
	if c.Persistent != nil {
		rec.Persistent = *c.Persistent
	}
	if !c.Expiry.IsZero() {
		rec.Expiry = c.Expiry
	}
	if c.SessionIdleTimeout != nil {
		rec.IdleTimeout = *c.SessionIdleTimeout
	}
	if idle := cmp.Or(rec.IdleTimeout, c.IdleTimeout); idle > 0 {
		slid := now.Add(idle)
		if rec.IdleExpiry.IsZero() || rec.IdleExpiry.After(slid) || slid.Sub(rec.IdleExpiry) >= c.TouchInterval {
			rec.IdleExpiry = slid
		}
	}
	if !rec.IdleExpiry.IsZero() && rec.IdleExpiry.After(rec.Expiry) {
		rec.IdleExpiry = rec.Expiry
	}
	rec.LastSeen = now
	return nil
}

// renewFrom gives rec, a session Store.Rekey moves, what fresh brings
// (for stores that keep records in memory, as applyTo): its creation time
// and device, its absolute deadline when fresh has one, and its idle
// deadline, never past the absolute one.
func (rec *Record) renewFrom(fresh *Record) {
	rec.Created, rec.UserAgent, rec.IP = fresh.Created, fresh.UserAgent, fresh.IP
	if !fresh.Expiry.IsZero() {
		rec.Expiry = fresh.Expiry
	}
	rec.IdleExpiry = fresh.IdleExpiry
	if !rec.IdleExpiry.IsZero() {
		rec.IdleExpiry = minTime(rec.IdleExpiry, rec.Expiry)
	}
}

// sizeAfter is the size values would have after c, encoded as a JSON
// object (see encodedSize), computed without changing them.
func (c *Change) sizeAfter(values map[string]json.RawMessage) int {
	size := 2 // {}
	for k, v := range values {
		if c.Clear || slices.Contains(c.Delete, k) {
			continue
		}
		if _, replaced := c.Set[k]; !replaced {
			size += entrySize(k, v)
		}
	}
	for k, v := range c.Set {
		size += entrySize(k, v)
	}
	return size
}

// encodedSize is the size of values encoded as a JSON object: what
// Config.MaxSize caps.
func encodedSize(values map[string]json.RawMessage) int {
	size := 2 // {}
	for k, v := range values {
		size += entrySize(k, v)
	}
	return size
}

// entrySize is one key and value's share of an encoded object: the quoted
// key, a colon, the value and a comma. Keys are counted as if they needed
// no escaping, which the stores' own encodings also keep within a few
// bytes.
func entrySize(key string, value json.RawMessage) int {
	return len(key) + len(value) + 4
}

// Info summarises one session for a "your devices" page. It holds no value
// of the session and no credential.
type Info struct {
	// Key is the store key (the hex SHA-256 of the token), usable with
	// Manager.RevokeSession. It is not a credential.
	Key    string
	UserID string
	// Created is when the session was created or last renewed (sign-in).
	Created time.Time
	// LastSeen is when a request last changed the session or slid its
	// idle expiry; see Config.TouchInterval.
	LastSeen   time.Time
	Expiry     time.Time
	IdleExpiry time.Time
	// UserAgent and IP describe the device that signed in; see
	// Config.TrustedProxies for how the IP is found.
	UserAgent, IP string
	// Current reports whether this is the session of the request whose
	// context was passed to Manager.UserSessions.
	Current bool
}

// Errors a Store returns; see Store for when.
var (
	ErrNotFound    = errors.New("session: not found")
	ErrConflict    = errors.New("session: key already exists")
	ErrUnavailable = errors.New("session: store unavailable")
	// ErrTooLarge is returned when a change would take a session over
	// Config.MaxSize.
	ErrTooLarge = errors.New("session: too large")
	// ErrNotSupported is returned by the Manager for an operation its store
	// does not implement (see UserIndex).
	ErrNotSupported = errors.New("session: not supported by this store")
	// ErrCorrupt is returned by a store for a record it holds but cannot
	// decode; see Store.
	ErrCorrupt = errors.New("session: stored session cannot be decoded")
)
