// Package expressimport is how cmd/sessionctl reaches the library's import
// of express-session's sessions: the bulk import, the pruning of the Node
// table, and the counts that stats and check print. The root package
// implements them next to the request path's import, which shares their
// code, and sets the functions below when it is initialised; it keeps them
// out of its own API, which is for applications, not operators' tools.
package expressimport

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Settings say where the sessions are, from the app's environment.
type Settings struct {
	// Pool reaches the database of both tables.
	Pool *pgxpool.Pool
	// Table is this library's table (SESSION_TABLE), ExpressTable
	// connect-pg-simple's (SESSION_EXPRESS_TABLE), as configured.
	Table, ExpressTable string
	// TimeZone is SESSION_EXPRESS_TIMEZONE, "" for the connection's.
	TimeZone string
	// Lifetime (SESSION_LIFETIME, 0 for the default) caps an imported
	// session's deadline; IdleTimeout (SESSION_IDLE_TIMEOUT), when set,
	// starts its idle window at the import.
	Lifetime, IdleTimeout time.Duration
}

// ImportOptions tune one bulk import.
type ImportOptions struct {
	// Batch is how many sessions one transaction moves.
	Batch int
	// BatchTimeout bounds each batch, and the queries before and after
	// them; 0 means a minute.
	BatchTimeout time.Duration
	// DryRun reads and counts, and changes nothing.
	DryRun bool
}

// Result is what a bulk import did, or with DryRun would do.
type Result struct {
	// Imported is how many sessions moved (would move).
	Imported int64 `json:"imported"`
	// Unreadable is how many live rows have a sess the import cannot read;
	// they stay where they are (see the log of the app, which takes such a
	// row out when its cookie comes back).
	Unreadable int64 `json:"unreadable"`
	// Remaining is how many live rows the Node table holds afterwards: the
	// unreadable ones, and any that a request was moving at that moment or
	// that arrived since.
	Remaining int64 `json:"remaining"`
	// Expired is how many expired rows the Node table holds, left for
	// "sessionctl express prune".
	Expired int64 `json:"expired"`
	// Batches is how many transactions it took.
	Batches int `json:"batches"`
	// CookieDomains are the Domain attributes express-session recorded for
	// the cookies of the sessions moved, when any had one.
	CookieDomains []string `json:"cookie_domains,omitempty"`
}

// Counts describe the move for stats and check.
type Counts struct {
	// ExpressTable is connect-pg-simple's table, quoted and qualified.
	ExpressTable string `json:"express_table"`
	// Live and Expired count the Node table's rows.
	Live    int64 `json:"legacy_live"`
	Expired int64 `json:"legacy_expired"`
	// ImportedOnRequest counts sessions moved by their user's first
	// request, ImportedInBulk those the bulk import moved, and Waiting
	// those of the bulk import whose user has not come back yet (live).
	ImportedOnRequest int64 `json:"imported_on_request"`
	ImportedInBulk    int64 `json:"imported_in_bulk"`
	Waiting           int64 `json:"waiting"`
	// TimeZone is the zone the expire column is read in, and
	// ConnectionTimeZone this connection's TimeZone.
	TimeZone           string `json:"time_zone"`
	ConnectionTimeZone string `json:"connection_time_zone"`
}

// The operations, set by package session when it is initialised.
var (
	// Import moves every live session of the Node table, batch by batch.
	Import func(ctx context.Context, s Settings, opts ImportOptions) (Result, error)
	// OpenPrune opens the Node table for pruning and returns batch, which
	// deletes at most limit of its expired rows (for package prune).
	OpenPrune func(ctx context.Context, s Settings) (batch func(ctx context.Context, limit int) (int, error), err error)
	// Count counts both sides of the move.
	Count func(ctx context.Context, s Settings) (Counts, error)
	// Migrate creates what the import keeps beside this library's table.
	Migrate func(ctx context.Context, s Settings) error
)
