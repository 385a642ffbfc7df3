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
//     missing one: Load, Replace, Update and Touch return ErrNotFound for it.
//     Stores compare expiry with their own clock (PostgreSQL: the database's
//     now()) and report it in Record.LoadedAt, so the Manager computes new
//     deadlines from that same clock.
//   - Version counts committed changes. Insert stores version 1; Replace and
//     Update store the next version; Touch leaves it alone.
//   - Replace is a compare-and-swap: it succeeds only if the stored version is
//     still rec.Version. If another writer committed first it returns
//     ErrConflict and changes nothing; the Manager then re-applies its own
//     changes through Update. Nothing is ever overwritten blindly, and a
//     record deleted meanwhile (logout, renewal) is never re-created.
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

	// Replace stores rec under key if the stored version equals rec.Version,
	// and sets rec.Version to the new version. It returns ErrConflict if the
	// stored version differs, ErrNotFound if the record is gone or expired.
	Replace(ctx context.Context, key string, rec *Record) error

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
	// newest first, without their values.
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
	// LoadedAt is the store's clock when Load or Update read the record.
	// Stores ignore it on writes.
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
	ErrConflict    = errors.New("session: changed by another request")
	ErrUnavailable = errors.New("session: store unavailable")
)
