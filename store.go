package session

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"time"
)

// Store keeps session records. The Manager is its only caller; handlers never
// see it. Every method takes a context that carries the request's deadline and
// must return promptly once it is done.
//
// The contract, which every implementation must honour and which
// package storetest checks:
//
//   - Keys are the hex SHA-256 of a session token. A Store never sees a token,
//     so a leak of its contents lets nobody hijack a session.
//   - A record is live while the store's clock is before Expiry and, when
//     IdleExpiry is set, before IdleExpiry. An expired record is the same as a
//     missing one: Load, Apply, Update and Touch return ErrNotFound for it.
//     Stores compare expiry with their own clock (PostgreSQL: the database's
//     now()) and report it in Record.LoadedAt, so the Manager computes new
//     deadlines of a stored session from that same clock (Apply slides the
//     idle expiry by it directly). Only a brand-new session's first
//     deadlines come from the application's clock, which is why
//     `sessionctl check` warns when the two drift apart.
//   - Version counts committed changes. Insert stores version 1; Apply and
//     Update store the next version; Touch leaves it alone.
//   - Apply changes the record as it is in the store at that moment, not as
//     the caller last read it: it removes and sets only the keys the change
//     names, atomically. Two requests that change different keys of one
//     session therefore both land, whatever their order; nothing is ever
//     overwritten blindly, and a record deleted meanwhile (logout, renewal)
//     is never re-created.
//   - Insert never overwrites: an existing key is ErrConflict.
//   - ErrNotFound and ErrConflict are the only expected failures. Any other
//     error means the store could not answer; wrap ErrUnavailable in it when
//     the backend is unreachable (connection refused, timeout) so the
//     Manager can answer 503 instead of 500.
//   - A Store is safe for concurrent use by multiple goroutines, and by
//     multiple processes where the backend is shared.
type Store interface {
	// Load returns the live record for key, with LoadedAt set to the store's
	// clock, or ErrNotFound.
	Load(ctx context.Context, key string) (*Record, error)

	// Insert stores a new record under key with version 1 and sets
	// rec.Version to 1. It returns ErrConflict if key exists.
	Insert(ctx context.Context, key string, rec *Record) error

	// Apply applies change atomically to the live record under key, stores
	// the next version, and returns the record as stored, with LoadedAt set
	// to the store's clock, but without its Values (nil): the caller knows
	// its own changes, and sending the whole session back would make every
	// write cost twice its size. It returns ErrNotFound if there is no live
	// record.
	Apply(ctx context.Context, key string, change Change) (*Record, error)

	// Rekey moves the live record under oldKey to newKey in one atomic step
	// (a renewal), applying change to it as it is at that moment and giving
	// it fresh's Created, Expiry and IdleExpiry, as version 1. It returns
	// the moved record, Values included, with LoadedAt set, or ErrNotFound
	// if no live record is under oldKey: a session deleted meanwhile is
	// never re-created, and a change another request applied meanwhile
	// moves with it.
	Rekey(ctx context.Context, oldKey, newKey string, change Change, fresh *Record) (*Record, error)

	// Update runs fn on the current record with no other writer able to
	// change it until fn returns (PostgreSQL: in one transaction with the row
	// locked), then stores the result under the next version. If fn returns
	// an error nothing is stored and Update returns that error. It returns
	// the stored record, or ErrNotFound.
	Update(ctx context.Context, key string, fn func(*Record) error) (*Record, error)

	// Touch moves the idle expiry of a live record to idleExpiry without
	// rewriting its values or changing its version. It returns ErrNotFound if
	// the record is gone or expired.
	Touch(ctx context.Context, key string, idleExpiry time.Time) error

	// Delete removes the record under key. Deleting a missing key is not an
	// error.
	Delete(ctx context.Context, key string) error

	// DeleteUser removes every record whose UserID is userID and returns how
	// many it removed. An empty userID matches nothing: anonymous sessions
	// are never revoked in bulk.
	DeleteUser(ctx context.Context, userID string) (int, error)

	// ListUser returns a summary of every live record whose UserID is userID,
	// newest first, without their values. An empty userID matches nothing.
	ListUser(ctx context.Context, userID string) ([]Info, error)

	// Prune removes expired records and returns how many it removed. The
	// Manager calls it periodically; a store shared between processes may
	// return 0 without work when another process is already pruning.
	Prune(ctx context.Context) (int, error)
}

// Record is one session as a Store keeps it.
type Record struct {
	// Values holds each session value as JSON, keyed by name. A Store may
	// normalise the JSON (PostgreSQL's jsonb reorders object keys and drops
	// spaces), so values come back equal as JSON, not byte for byte.
	// Neither the Manager nor a Store modifies a RawMessage in place; they
	// replace it, which is why Clone may share the bytes.
	Values map[string]json.RawMessage
	// UserID is the user the session belongs to, or "" for an anonymous
	// session. Stores index it for DeleteUser and ListUser.
	UserID string
	// Persistent reports whether the cookie outlives the browser session
	// (remember-me). It is false for a session cookie.
	Persistent bool
	// Created is when the session was first stored.
	Created time.Time
	// Expiry is the absolute deadline: the session ends then however active
	// it is.
	Expiry time.Time
	// IdleExpiry is the sliding deadline, or the zero time when the session
	// has no idle timeout.
	IdleExpiry time.Time
	// Version counts committed changes; see Store.
	Version int64
	// LoadedAt is the store's clock when Load, Apply or Update read the
	// record. Stores ignore it on writes.
	LoadedAt time.Time
}

// Clone returns a copy of r with its own Values map, so that a Store and
// the Manager never share one. The JSON bytes are shared; see Values.
func (r *Record) Clone() *Record {
	c := *r
	c.Values = maps.Clone(r.Values)
	if c.Values == nil {
		c.Values = map[string]json.RawMessage{}
	}
	return &c
}

// Deadline returns when the record expires: the earlier of Expiry and a
// non-zero IdleExpiry.
func (r *Record) Deadline() time.Time {
	if !r.IdleExpiry.IsZero() && r.IdleExpiry.Before(r.Expiry) {
		return r.IdleExpiry
	}
	return r.Expiry
}

// Change is what one request changed in a session, applied by Store.Apply
// in this order: Clear, Delete, Set, then the rest.
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
	// IdleTimeout, when positive, slides IdleExpiry to the store's clock
	// plus IdleTimeout, but never past Expiry.
	IdleTimeout time.Duration
}

// ApplyTo applies the change to rec as Store.Apply must, given the store's
// clock now: a helper for stores that hold records in memory.
func (c *Change) ApplyTo(rec *Record, now time.Time) {
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
	if c.IdleTimeout > 0 {
		rec.IdleExpiry = minTime(now.Add(c.IdleTimeout), rec.Expiry)
	}
}

// Info summarises one session for a "your devices" page.
type Info struct {
	// Key is the store key (the hex SHA-256 of the token), usable with
	// Manager.RevokeSession. It is not a credential.
	Key        string
	UserID     string
	Created    time.Time
	Expiry     time.Time
	IdleExpiry time.Time
}

// Errors a Store returns; see Store for when.
var (
	ErrNotFound    = errors.New("session: not found")
	ErrConflict    = errors.New("session: key already exists")
	ErrUnavailable = errors.New("session: store unavailable")
)
