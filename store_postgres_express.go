package session

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/smartscheduler/session/internal/expressimport"
	"github.com/smartscheduler/session/migrations"
)

// This file moves express-session's sessions from connect-pg-simple's
// table into the PostgreSQL store's: one at a time for the request path (the
// importer of state.go), and all at once for sessionctl express import.
// Both take a session out of the Node table in the transaction that puts it
// into the library's, so that a session is in exactly one of them.
//
// Where a moved session lives until its user comes back:
//
//   - On a request, it is stored under the key of a fresh token, which the
//     response sets as the session cookie.
//   - The bulk import cannot set cookies, so it stores each session under
//     expressKey(sid), which the next request presenting that sid's cookie
//     moves to a fresh token (a Store.Rekey).
//
// Either way the ledger table beside the store's (<table>_express_import)
// records expressKey(sid) and how it moved, in the same transaction. The
// ledger is what stats counts, and how a request that finds nothing tells
// a session another request just took (it then starts none: see
// imported.taken) from one that never was.

// expressKey is the store key under which the bulk import keeps the
// session of express sid, and the ledger records the move: the SHA-256 of
// the sid behind a label. A token of ours never hashes to it (tokens are
// base64url, without ':'), and the table reveals no sid.
func expressKey(sid string) string {
	return storeKey("express-session:" + sid)
}

// expressLiveIn is connect-pg-simple's own test for a live row, with
// expire read in the Node connection's TimeZone, the parameter zone: see
// expressRowQuery.
func expressLiveIn(zone string) string {
	return "expire AT TIME ZONE " + zone + " >= now()"
}

// ledgerMode says what opening the import does about a missing ledger.
type ledgerMode uint8

const (
	ledgerRequire  ledgerMode = iota // fail, naming the fix: the request path with SESSION_AUTO_MIGRATE=false
	ledgerCreate                     // create it: New, sessionctl migrate and import
	ledgerOptional                   // go on without: counts of a move not begun, a dry run
)

// expressImporter moves sessions from the Node table into store's.
type expressImporter struct {
	store  *postgresStore
	legacy migrations.Table
	// zone is the TimeZone expire is read in (see expressRowQuery), and
	// connZone this connection's, for sessionctl check.
	zone, connZone string
	// ledger is the ledger's quoted name; hasLedger is false only in
	// ledgerOptional mode, before the first move.
	ledger    string
	hasLedger bool
	// lifetime and idleTimeout shape what the bulk import stores, as
	// Config.Lifetime and Config.IdleTimeout shape a new session.
	lifetime, idleTimeout time.Duration
	logger                *slog.Logger
	statement             expressStatements
}

// expressStatements holds the import's SQL, built once per table pair.
type expressStatements struct {
	// take deletes a live row by sid ($1), returning it with expire in $2.
	take string
	// adopt is the store's insert ($1-$11), also recording $12 in the
	// ledger and deleting a bulk copy left under it (which exists only if
	// the Node app wrote the row again after a bulk import).
	adopt string
	// claimed reports whether the ledger holds $1.
	claimed string
	// batch and peek read up to $3 live rows after sid $1, in sid order,
	// expire in $2: batch locks them, skipping rows a request holds; peek
	// is for a dry run, which locks nothing.
	batch, peek string
	// move deletes the sids $1 and stores their sessions ($2-$8 as
	// arrays) under the keys $2, recording them in the ledger.
	move string
	// counts and prune work on the Node table, zone $1.
	counts, prune string
	// ledgerCounts counts the ledger against the store's live rows.
	ledgerCounts string
}

func newExpressStatements(store migrations.Table, legacy migrations.Table, ledger, insert string) expressStatements {
	t, l := store.String(), legacy.String()
	live2, live1 := expressLiveIn("$2"), expressLiveIn("$1")
	const moved = "(id, data, user_id, persistent, created_at, expires_at, idle_expires_at, last_seen)"
	return expressStatements{
		take: "DELETE FROM " + l + " WHERE sid = $1 AND " + live2 + " RETURNING sess, expire AT TIME ZONE $2, now()",
		adopt: "WITH ledger AS (INSERT INTO " + ledger + " (key, via) VALUES ($12, 'request') ON CONFLICT (key) DO UPDATE SET via = excluded.via, imported_at = excluded.imported_at)," +
			" stale AS (DELETE FROM " + t + " WHERE id = $12) " + insert,
		claimed: "SELECT EXISTS (SELECT 1 FROM " + ledger + " WHERE key = $1)",
		batch:   "SELECT sid, sess, expire AT TIME ZONE $2, now() FROM " + l + " WHERE sid > $1 AND " + live2 + " ORDER BY sid LIMIT $3 FOR UPDATE SKIP LOCKED",
		peek:    "SELECT sid, sess, expire AT TIME ZONE $2, now() FROM " + l + " WHERE sid > $1 AND " + live2 + " ORDER BY sid LIMIT $3",
		move: "WITH gone AS (DELETE FROM " + l + " WHERE sid = ANY($1::text[]))," +
			" ledger AS (INSERT INTO " + ledger + " (key, via) SELECT unnest($2::text[]), 'bulk' ON CONFLICT (key) DO UPDATE SET via = excluded.via, imported_at = excluded.imported_at)" +
			" INSERT INTO " + t + " " + moved +
			" SELECT id, data::jsonb, user_id, persistent, created_at, expires_at, idle_expires_at, created_at" +
			" FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[], $6::timestamptz[], $7::timestamptz[], $8::timestamptz[])" +
			" AS moved(id, data, user_id, persistent, created_at, expires_at, idle_expires_at)" +
			// A copy under the same key exists only if the Node app wrote
			// the row again after an earlier bulk import: this is newer.
			" ON CONFLICT (id) DO UPDATE SET data = excluded.data, user_id = excluded.user_id, persistent = excluded.persistent," +
			" created_at = excluded.created_at, expires_at = excluded.expires_at, idle_timeout = NULL," +
			" idle_expires_at = excluded.idle_expires_at, last_seen = excluded.last_seen, user_agent = NULL, ip = NULL",
		counts: "SELECT count(*) FILTER (WHERE " + live1 + "), count(*) FILTER (WHERE NOT " + live1 + ") FROM " + l,
		prune:  "DELETE FROM " + l + " WHERE sid IN (SELECT sid FROM " + l + " WHERE NOT " + live1 + " LIMIT $2 FOR UPDATE SKIP LOCKED)",
		ledgerCounts: "SELECT count(*) FILTER (WHERE l.via = 'request'), count(*) FILTER (WHERE l.via = 'bulk'), count(s.id) FILTER (WHERE l.via = 'bulk')" +
			" FROM " + ledger + " l LEFT JOIN " + t + " s ON s.id = l.key AND " + live,
	}
}

// newExpressImporter opens the import from the Node table that s names
// into pg's table: it checks that the table is connect-pg-simple's, finds
// the zone its expire column is in, and sees to the ledger as mode says.
func newExpressImporter(ctx context.Context, pg *postgresStore, s expressSettings, mode ledgerMode, logger *slog.Logger) (*expressImporter, error) {
	legacy, err := resolveExpressTable(ctx, pg.pool, s.legacy, pg.table)
	if err != nil {
		return nil, err
	}
	im := &expressImporter{store: pg, legacy: legacy, ledger: pg.table.Sibling("express_import"),
		lifetime: cmp.Or(s.lifetime, defaultLifetime), idleTimeout: s.idleTimeout, logger: logger}
	if err := im.resolveZone(ctx, s.zone); err != nil {
		return nil, err
	}
	if err := im.openLedger(ctx, mode); err != nil {
		return nil, err
	}
	im.statement = newExpressStatements(pg.table, legacy, im.ledger, pg.statement.insert)
	return im, nil
}

// resolveZone settles the zone expire is read in: configured (zone, which
// PostgreSQL must know) or this connection's.
func (im *expressImporter) resolveZone(ctx context.Context, zone string) error {
	err := im.store.pool.QueryRow(ctx, "SELECT COALESCE($1::text, current_setting('TimeZone')), current_setting('TimeZone'),"+
		" now() AT TIME ZONE COALESCE($1::text, current_setting('TimeZone')) IS NOT NULL", textParam(zone)).Scan(&im.zone, &im.connZone, new(bool))
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "22023" { // invalid_parameter_value: time zone not recognized
		return &ConfigError{Variable: "SESSION_EXPRESS_TIMEZONE", Problem: fmt.Sprintf("is %q, which PostgreSQL does not know as a time zone", zone),
			Fix: "set it to the TimeZone the Node app's database connection has (SHOW TimeZone in psql, connected as the Node app connects), such as Etc/UTC or America/New_York"}
	}
	if err != nil {
		return fmt.Errorf("session: reading the database's TimeZone for SESSION_EXPRESS_TIMEZONE: %w", classify(ctx, err))
	}
	return nil
}

// openLedger finds the ledger, or creates it under the migration lock so
// that instances starting together create it once.
func (im *expressImporter) openLedger(ctx context.Context, mode ledgerMode) error {
	pool := im.store.pool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", im.ledger).Scan(&im.hasLedger); err != nil {
		return fmt.Errorf("session: looking for %s: %w", im.ledger, classify(ctx, err))
	}
	switch {
	case im.hasLedger, mode == ledgerOptional:
		return nil
	case mode == ledgerRequire:
		return fmt.Errorf("session: %s, where the express-session import records what it moved, does not exist: run \"sessionctl migrate\" with SESSION_EXPRESS_TABLE set (or set SESSION_AUTO_MIGRATE=true)", im.ledger)
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", im.store.table.MigrateLockKey()); err != nil {
			return err
		}
		// key is expressKey(sid); via is "request" or "bulk".
		_, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+im.ledger+` (
    key         text        PRIMARY KEY,
    via         text        NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now()
)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("session: creating %s for the express-session import: %w", im.ledger, classify(ctx, err))
	}
	im.hasLedger = true
	return nil
}

// adopt implements importer. It looks in the Node table first, and only
// then for a session the bulk import stored: a bulk import moving this row
// right now holds its lock, so the first step waits for it, and the
// second, a statement of its own, sees what it stored.
func (im *expressImporter) adopt(ctx context.Context, sid, key string, fresh *Record) (imported, error) {
	var found imported
	claim := expressKey(sid)
	took := false
	var unreadable error
	err := pgx.BeginFunc(ctx, im.store.pool, func(tx pgx.Tx) error {
		var sess []byte
		var expire, now time.Time
		err := tx.QueryRow(ctx, im.statement.take, sid, im.zone).Scan(&sess, &expire, &now)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		took = true
		parsed, err := readExpressRow(sess)
		if err != nil {
			// Taken out all the same: left in place, it would be read,
			// and logged, by every request presenting its cookie.
			unreadable = err
			return nil
		}
		found.at = legacyCookie{path: parsed.cookiePath, domain: parsed.cookieDomain}
		rec := expressRecord(parsed, expire, fresh, now)
		args, err := insertArgs(key, rec)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, im.statement.adopt, append(args, claim)...); err != nil {
			return err
		}
		found.rec = rec
		return nil
	})
	switch {
	case err != nil:
		return imported{}, im.store.fail(ctx, "express import", err)
	case unreadable != nil:
		im.logger.WarnContext(ctx, "session: an express-session row cannot be read, so its user starts a new session; the row is deleted and the cookie cleared",
			"table", im.legacy.String(), "key_prefix", claim[:12], "error", unreadable)
		return found, nil
	case took:
		return found, nil
	}

	// Not in the Node table: the bulk import may have moved it. fresh
	// brings the token's new creation time and idle window; the deadline
	// stays the one the bulk import gave it.
	renewed := *fresh
	renewed.Expiry = time.Time{}
	rec, err := im.store.Rekey(ctx, claim, key, Change{}, &renewed)
	switch {
	case err == nil:
		found.rec = rec
		return found, nil
	case !errors.Is(err, ErrNotFound):
		return imported{}, err
	}
	if err := im.store.pool.QueryRow(ctx, im.statement.claimed, claim).Scan(&found.taken); err != nil {
		return imported{}, im.store.fail(ctx, "express import", err)
	}
	return found, nil
}

// readExpressRow reads a sess column for the import: parseExpressSession,
// refusing also the one thing a json column holds that jsonb cannot, a
// \u0000 escape, so that the insert never fails on it.
func readExpressRow(sess []byte) (expressSession, error) {
	parsed, err := parseExpressSession(sess)
	if err != nil {
		return parsed, err
	}
	for key, value := range parsed.values {
		if strings.Contains(key, "\x00") || strings.Contains(string(value), `\u0000`) {
			return expressSession{}, fmt.Errorf("%w: value %q holds \\u0000, which PostgreSQL's jsonb cannot store", errExpressSession, key)
		}
	}
	return parsed, nil
}

// expressRecord is the session parsed from a row whose expire column reads
// rowExpire, moved at now (the database's clock): a new session as fresh
// describes one (in the Manager's clock, which may differ), holding the
// express session's values and user, with its persistence and its
// deadline, capped by the new session's.
func expressRecord(s expressSession, rowExpire time.Time, fresh *Record, now time.Time) *Record {
	shift := now.Sub(fresh.Created)
	rec := &Record{
		Values:     s.values,
		UserID:     s.user,
		Persistent: s.persistent(),
		Created:    now,
		LastSeen:   now,
		LoadedAt:   now,
		Expiry:     minTime(s.expiry(rowExpire), fresh.Expiry.Add(shift)),
	}
	if !fresh.IdleExpiry.IsZero() {
		rec.IdleExpiry = minTime(fresh.IdleExpiry.Add(shift), rec.Expiry)
	}
	return rec
}

// freshAt is the record a new session created at now would get: what the
// bulk import gives expressRecord, as the Manager's newRecord gives the
// request path.
func (im *expressImporter) freshAt(now time.Time) *Record {
	rec := &Record{Created: now, Expiry: now.Add(im.lifetime)}
	if im.idleTimeout > 0 {
		rec.IdleExpiry = minTime(now.Add(im.idleTimeout), rec.Expiry)
	}
	return rec
}

// importAll moves every live session of the Node table in batches, each a
// transaction bounded by opts.BatchTimeout. Rows a request holds are
// skipped (that request moves them); unreadable rows stay.
func (im *expressImporter) importAll(ctx context.Context, opts expressimport.ImportOptions) (expressimport.Result, error) {
	var result expressimport.Result
	limit := max(opts.Batch, 1)
	domains := map[string]bool{}
	after := ""
	for {
		batch, cancel := context.WithTimeout(ctx, opts.BatchTimeout)
		b, err := im.importBatch(batch, after, limit, opts.DryRun)
		cancel()
		if err != nil {
			return result, fmt.Errorf("session: express import, batch %d: %w", result.Batches+1, err)
		}
		result.Batches++
		result.Imported += int64(b.moved)
		result.Unreadable += int64(b.unreadable)
		for _, d := range b.domains {
			domains[d] = true
		}
		if b.read < limit {
			break
		}
		after = b.last
	}
	result.CookieDomains = slices.Sorted(func(yield func(string) bool) {
		for d := range domains {
			if !yield(d) {
				return
			}
		}
	})
	counting, cancel := context.WithTimeout(ctx, opts.BatchTimeout)
	defer cancel()
	err := im.store.pool.QueryRow(counting, im.statement.counts, im.zone).Scan(&result.Remaining, &result.Expired)
	if err != nil {
		return result, fmt.Errorf("session: counting what is left in %s: %w", im.legacy, classify(ctx, err))
	}
	return result, nil
}

// batchResult is what one batch read and moved.
type batchResult struct {
	read, moved, unreadable int
	// last is the greatest sid read, where the next batch starts.
	last    string
	domains []string
}

// importBatch moves up to limit live sessions whose sid sorts after
// after, in one transaction: read and lock them, delete them from the Node
// table, store them under their expressKey, record them in the ledger.
func (im *expressImporter) importBatch(ctx context.Context, after string, limit int, dryRun bool) (batchResult, error) {
	var b batchResult
	err := pgx.BeginFunc(ctx, im.store.pool, func(tx pgx.Tx) error {
		query := im.statement.batch
		if dryRun {
			query = im.statement.peek
		}
		rows, err := tx.Query(ctx, query, after, im.zone, limit)
		if err != nil {
			return err
		}
		type row struct {
			sid         string
			sess        []byte
			expire, now time.Time
		}
		read, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.sid, &x.sess, &x.expire, &x.now)
		})
		if err != nil {
			return err
		}
		var sids, keys, data []string
		var users []pgtype.Text
		var persistent []bool
		var created, expiry []time.Time
		var idle []pgtype.Timestamptz
		for _, r := range read {
			b.read++
			b.last = r.sid
			parsed, err := readExpressRow(r.sess)
			if err != nil {
				b.unreadable++
				continue
			}
			if parsed.cookieDomain != "" {
				b.domains = append(b.domains, parsed.cookieDomain)
			}
			rec := expressRecord(parsed, r.expire, im.freshAt(r.now), r.now)
			values, err := encodeValues(rec.Values)
			if err != nil {
				return err
			}
			sids = append(sids, r.sid)
			keys = append(keys, expressKey(r.sid))
			data = append(data, values)
			users = append(users, pgtype.Text{String: rec.UserID, Valid: rec.UserID != ""})
			persistent = append(persistent, rec.Persistent)
			created = append(created, rec.Created)
			expiry = append(expiry, rec.Expiry)
			idle = append(idle, pgtype.Timestamptz{Time: rec.IdleExpiry, Valid: !rec.IdleExpiry.IsZero()})
		}
		b.moved = len(sids)
		if dryRun || len(sids) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, im.statement.move, sids, keys, data, users, persistent, created, expiry, idle)
		return err
	})
	if err != nil {
		return batchResult{}, classify(ctx, err)
	}
	return b, nil
}

// prune deletes at most limit of the Node table's expired rows and
// returns how many.
func (im *expressImporter) prune(ctx context.Context, limit int) (int, error) {
	tag, err := im.store.pool.Exec(ctx, im.statement.prune, im.zone, max(limit, 1))
	if err != nil {
		return 0, fmt.Errorf("session: pruning %s: %w", im.legacy, classify(ctx, err))
	}
	return int(tag.RowsAffected()), nil
}

// counts counts both sides of the move.
func (im *expressImporter) counts(ctx context.Context) (expressimport.Counts, error) {
	c := expressimport.Counts{ExpressTable: im.legacy.String(), TimeZone: im.zone, ConnectionTimeZone: im.connZone}
	if err := im.store.pool.QueryRow(ctx, im.statement.counts, im.zone).Scan(&c.Live, &c.Expired); err != nil {
		return c, fmt.Errorf("session: counting %s: %w", im.legacy, classify(ctx, err))
	}
	if !im.hasLedger {
		return c, nil // nothing moved yet
	}
	if err := im.store.pool.QueryRow(ctx, im.statement.ledgerCounts).Scan(&c.ImportedOnRequest, &c.ImportedInBulk, &c.Waiting); err != nil {
		return c, fmt.Errorf("session: counting %s: %w", im.ledger, classify(ctx, err))
	}
	return c, nil
}

// openExpressTool opens the import for sessionctl, on the store s names,
// whose table must be migrated.
func openExpressTool(ctx context.Context, s expressimport.Settings, mode ledgerMode) (*expressImporter, error) {
	pg, err := newPostgresStore(ctx, s.Pool, PostgresOptions{Table: s.Table, ManualMigrations: true})
	if err != nil {
		return nil, err
	}
	if s.ExpressTable == "" {
		return nil, errors.New("SESSION_EXPRESS_TABLE is not set: set it to connect-pg-simple's table (\"session\" unless the Node app chose another)")
	}
	return newExpressImporter(ctx, pg, expressSettings{legacy: s.ExpressTable, zone: s.TimeZone, lifetime: s.Lifetime, idleTimeout: s.IdleTimeout},
		mode, slog.Default())
}

func init() {
	expressimport.Import = func(ctx context.Context, s expressimport.Settings, opts expressimport.ImportOptions) (expressimport.Result, error) {
		mode := ledgerCreate
		if opts.DryRun {
			mode = ledgerOptional
		}
		opts.BatchTimeout = cmp.Or(opts.BatchTimeout, time.Minute)
		opening, cancel := context.WithTimeout(ctx, opts.BatchTimeout)
		im, err := openExpressTool(opening, s, mode)
		cancel()
		if err != nil {
			return expressimport.Result{}, err
		}
		return im.importAll(ctx, opts)
	}
	expressimport.OpenPrune = func(ctx context.Context, s expressimport.Settings) (func(context.Context, int) (int, error), error) {
		im, err := openExpressTool(ctx, s, ledgerOptional)
		if err != nil {
			return nil, err
		}
		return im.prune, nil
	}
	expressimport.Count = func(ctx context.Context, s expressimport.Settings) (expressimport.Counts, error) {
		im, err := openExpressTool(ctx, s, ledgerOptional)
		if err != nil {
			return expressimport.Counts{}, err
		}
		return im.counts(ctx)
	}
	expressimport.Migrate = func(ctx context.Context, s expressimport.Settings) error {
		_, err := openExpressTool(ctx, s, ledgerCreate)
		return err
	}
}
