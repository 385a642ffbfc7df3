package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session/internal/connerr"
	"github.com/smartscheduler/session/internal/defaults"
	"github.com/smartscheduler/session/internal/redact"
	"github.com/smartscheduler/session/migrations"
)

// PostgresOptions configures NewPostgresStore. The zero value is ready to use.
type PostgresOptions struct {
	// Table is the session table, "table" or "schema.table". Names are used
	// exactly as written, as quoted identifiers (case matters); a name
	// without a schema goes in the database's current_schema(). The
	// migrations record themselves in "<table>_migrations" beside it. The
	// default value is "session".
	Table string

	// ManualMigrations stops the store from migrating the schema when it
	// opens. It then only checks that the table exists and is up to date,
	// and fails with instructions if not; run "sessionctl migrate" at deploy
	// time instead. Use it when the application's database role may not
	// create tables. The default value is false: the store migrates at open,
	// safely even when many instances start at once.
	ManualMigrations bool
}

// postgresStore is the Store NewPostgresStore returns.
type postgresStore struct {
	pool      *pgxpool.Pool
	table     migrations.Table
	statement statements
	// recent is what Modify keeps of the records it wrote, to write the
	// next change of the same session in one round trip.
	recent recentRecords
}

// statements holds every query, built once because the table name is fixed
// per store; constant SQL text lets pgx cache each prepared statement.
type statements struct {
	load, insert, apply, applyOwnIdle, touch, rekey, exists, lockForUpdate, update, updateIf, count,
	delete, deleteUser, listUser, trimUser, prune string
}

// Columns and expressions the statements share.
const (
	// live is true for a row whose deadline is still ahead of the
	// database's clock. LEAST ignores NULL, so a row without an idle expiry
	// is judged by its absolute expiry alone; it is also the expression the
	// deadline index covers.
	live = "LEAST(expires_at, idle_expires_at) > now()"
	// recordColumns are what scanRecord reads after data, before now().
	recordColumns = "user_id, persistent, created_at, expires_at, (EXTRACT(EPOCH FROM idle_timeout) * 1000000)::bigint," +
		" idle_expires_at, COALESCE(last_seen, created_at), user_agent, ip"
	// infoColumns are what scanInfo reads.
	infoColumns = "id, user_id, created_at, COALESCE(last_seen, created_at), expires_at, idle_expires_at, user_agent, ip"
	micros      = " * interval '1 microsecond'"
)

// changeSQL is what Apply and Rekey make of a row's values and metadata:
// the jsonb operators apply the change to the row as it is, under the row
// lock the statement takes, so there is no read-modify-write race. first is
// the number of the first of its parameters (see changeArgs).
type changeSQL struct{ data, userID, persistent, expiry, idleTimeout, fits string }

func newChangeSQL(first int) changeSQL {
	p := func(i int) string { return fmt.Sprintf("$%d", first+i) }
	data := "(CASE WHEN " + p(0) + "::boolean THEN '{}'::jsonb ELSE data END - " + p(1) + "::text[]) || " + p(2) + "::jsonb"
	return changeSQL{
		data:        data,
		userID:      "CASE WHEN " + p(3) + "::boolean THEN " + p(4) + "::text ELSE user_id END",
		persistent:  "COALESCE(" + p(5) + "::boolean, persistent)",
		expiry:      "COALESCE(" + p(6) + "::timestamptz, expires_at)",
		idleTimeout: "CASE WHEN " + p(7) + "::boolean THEN " + p(8) + "::bigint" + micros + " ELSE idle_timeout END",
		// A change that sets nothing can only shrink the values, so only
		// one that sets a value pays for measuring them.
		fits: "(" + p(9) + "::integer <= 0 OR " + p(2) + "::jsonb = '{}'::jsonb OR octet_length((" + data + ")::text) <= " + p(9) + ")",
	}
}

// slide is the idle expiry after a write or a touch, never past expiry:
// the database's clock plus the session's own idle timeout (own), or the
// configured one (configured, in microseconds), once at least
// touchInterval (also in microseconds) of the idle window has passed;
// otherwise, or without an idle timeout of either kind, it is left as it
// is, so that the UPDATE changes no indexed column and stays a HOT update.
// Each operand is written as few times as the logic allows: under a
// generic plan PostgreSQL evaluates every occurrence, and this expression,
// written with the slid value nested twice, cost a write 8% of its time.
func slide(own, configured, touchInterval, expiry string) string {
	to := "(now() + COALESCE(" + own + ", NULLIF(" + configured + "::bigint, 0)" + micros + "))"
	return "CASE WHEN " + to + " IS NULL THEN CASE WHEN idle_expires_at IS NULL THEN NULL ELSE LEAST(idle_expires_at, " + expiry + ") END" +
		" WHEN idle_expires_at IS NULL OR idle_expires_at > " + to + " OR idle_expires_at <= " + to + " - " + touchInterval + "::bigint" + micros +
		" THEN LEAST(" + to + ", " + expiry + ") ELSE LEAST(idle_expires_at, " + expiry + ") END"
}

func newStatements(t string) statements {
	const stored = "data, user_id, persistent, created_at, expires_at, idle_timeout, idle_expires_at, last_seen, user_agent, ip"
	apply := newChangeSQL(2)
	rekey := newChangeSQL(3)
	// The idle expiry slides by the row's own idle timeout, or the
	// configured one ($12); without either it keeps its value. Either way
	// it never passes the absolute expiry. A change that sets no idle
	// timeout of the session's own (nearly all) takes the row's as it is.
	applyWith := func(own string) string {
		return "UPDATE " + t + " SET data = " + apply.data + ", user_id = " + apply.userID + ", persistent = " + apply.persistent +
			", expires_at = " + apply.expiry + ", idle_timeout = " + apply.idleTimeout +
			", idle_expires_at = " + slide(own, "$12", "$13", apply.expiry) + ", last_seen = now()" +
			" WHERE id = $1 AND " + live + " AND " + apply.fits + " RETURNING " + recordColumns + ", now()"
	}
	const modified = "data = $2, user_id = $3, persistent = $4, expires_at = $5, idle_timeout = $6::bigint" + micros +
		", idle_expires_at = $7, last_seen = now()"
	return statements{
		load:         "SELECT data, " + recordColumns + ", now() FROM " + t + " WHERE id = $1 AND " + live,
		insert:       "INSERT INTO " + t + " (id, " + stored + ") VALUES ($1, $2, $3, $4, $5, $6, $7" + micros + ", $8, $9, $10, $11)",
		apply:        applyWith("idle_timeout"),
		applyOwnIdle: applyWith(apply.idleTimeout),
		// A touch writes the idle expiry and LastSeen and nothing else, so
		// that sliding expiry never rewrites the values (nor their TOAST).
		touch: "UPDATE " + t + " SET idle_expires_at = " + slide("idle_timeout", "$2", "$3", "expires_at") + "," +
			" last_seen = now() WHERE id = $1 AND " + live + " RETURNING " + recordColumns + ", now()",
		// DELETE waits for a concurrent writer's row lock and returns the
		// row as that writer left it; no row means no session to move.
		rekey: "WITH old AS (DELETE FROM " + t + " WHERE id = $1 AND " + live + " AND " + rekey.fits +
			" RETURNING " + rekey.data + " AS data, " + rekey.userID + " AS user_id, " + rekey.persistent + " AS persistent, " +
			rekey.expiry + " AS expires_at, " + rekey.idleTimeout + " AS idle_timeout)" +
			" INSERT INTO " + t + " (id, " + stored + ") SELECT $2::text, data, user_id, persistent, $13::timestamptz, COALESCE($17::timestamptz, expires_at), idle_timeout," +
			" CASE WHEN $14::timestamptz IS NULL THEN NULL ELSE LEAST($14::timestamptz, COALESCE($17::timestamptz, expires_at)) END, now(), $15::text, $16::text FROM old" +
			" RETURNING data, " + recordColumns + ", now()",
		exists:        "SELECT EXISTS (SELECT 1 FROM " + t + " WHERE id = $1 AND " + live + ")",
		count:         "SELECT count(*) FROM " + t + " WHERE " + live,
		lockForUpdate: "SELECT data, " + recordColumns + ", now() FROM " + t + " WHERE id = $1 AND " + live + " FOR UPDATE",
		update:        "UPDATE " + t + " SET " + modified + " WHERE id = $1 RETURNING xmin",
		// updateIf is update only on the row version the caller saw.
		updateIf:   "UPDATE " + t + " SET " + modified + " WHERE id = $1 AND xmin = $8 AND " + live + " RETURNING xmin, now()",
		delete:     "DELETE FROM " + t + " WHERE id = $1 RETURNING " + infoColumns,
		deleteUser: "DELETE FROM " + t + " WHERE user_id = $1 AND id <> $2 RETURNING " + infoColumns,
		listUser:   "SELECT " + infoColumns + " FROM " + t + " WHERE user_id = $1 AND " + live + " ORDER BY created_at DESC, id",
		trimUser: "DELETE FROM " + t + " WHERE id IN (SELECT id FROM " + t + " WHERE user_id = $1 AND " + live +
			" ORDER BY COALESCE(last_seen, created_at) DESC, created_at DESC, id OFFSET $2) RETURNING " + infoColumns,
		// One statement, one transaction: the advisory lock, taken once by
		// the uncorrelated subquery, keeps a second instance from pruning the
		// same rows at the same moment, and SKIP LOCKED leaves a row held by
		// a Modify in flight for the next run.
		prune: "DELETE FROM " + t + " WHERE id IN (SELECT id FROM " + t + " WHERE (SELECT pg_try_advisory_xact_lock($2))" +
			" AND LEAST(expires_at, idle_expires_at) <= now() LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING " + infoColumns,
	}
}

// NewPostgresStore returns a Store that keeps sessions in a PostgreSQL
// table, shared by every process that uses the same table, on pool, which
// stays the caller's. New opens one itself from Config (USE_POSTGRES,
// DATABASE_URL). It resolves the table's schema and migrates the table, or
// with ManualMigrations checks it, before returning.
//
// The store also implements UserIndex and Pruner, each call one statement
// on an index of the table. Load is one SELECT, Insert one INSERT, Apply one
// UPDATE (a change that only slides the idle expiry touches the row at most
// once per TouchInterval), Rekey one statement that deletes the old row and
// inserts the new one. Modify (Update[T]) is one UPDATE when this process
// wrote the session last and no other writer changed it since (the store
// keeps up to 4096 such records, 8 MiB, each for 30 seconds), and
// otherwise one transaction of two round trips that holds the row lock
// only across fn.
func NewPostgresStore(ctx context.Context, pool *pgxpool.Pool, opts PostgresOptions) (Store, error) {
	s, err := newPostgresStore(ctx, pool, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// newPostgresStore is NewPostgresStore for the package, which needs the
// store's own type (the express importer, sessionctl's hooks).
func newPostgresStore(ctx context.Context, pool *pgxpool.Pool, opts PostgresOptions) (*postgresStore, error) {
	name := opts.Table
	if name == "" {
		name = defaults.Table
	}
	table, err := migrations.ParseTable(name)
	if err != nil {
		return nil, fmt.Errorf("session: PostgresOptions.Table: %w", err)
	}
	table, err = table.Resolve(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("session: %w", classify(ctx, err))
	}
	if opts.ManualMigrations {
		schema, err := migrations.Check(ctx, pool, table)
		if err == nil {
			err = schema.Err()
		}
		if err != nil {
			return nil, fmt.Errorf("session: %w", classify(ctx, err))
		}
	} else if _, err := migrations.Apply(ctx, pool, table); err != nil {
		return nil, fmt.Errorf("session: %w", classify(ctx, err))
	}
	return &postgresStore{pool: pool, table: table, statement: newStatements(table.String())}, nil
}

// openPostgresStore connects to databaseURL with a pool of its own, waiting
// at most connectTimeout for a first connection, then opens the store on it
// as NewPostgresStore does. Its errors name the host, port and database but
// never the password or the URL.
func openPostgresStore(ctx context.Context, databaseURL string, opts PostgresOptions, connectTimeout time.Duration) (*postgresStore, *pgxpool.Pool, error) {
	if problem, fix := redact.URLProblem(databaseURL); problem != "" {
		// pgx would read part of the password as the host name, look it up
		// and quote it in its errors: refuse before connecting.
		return nil, nil, fmt.Errorf("session: DATABASE_URL %s: %s", problem, fix)
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// Text only: pgconn.ParseConfigError keeps the connection string.
		return nil, nil, fmt.Errorf("session: DATABASE_URL is not a valid PostgreSQL URL (%s): fix its syntax, e.g. postgres://user:password@host:5432/dbname",
			redact.Message(err.Error()))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	cancelOnTimeout(&cfg.ConnConfig.Config)
	where := fmt.Sprintf("host %s port %d database %q", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("session: open PostgreSQL pool for %s: %w", where, redact.Error(err))
	}
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("session: cannot connect to PostgreSQL at %s within %v: %w: %s",
			where, connectTimeout, redact.Error(connerr.Tidy(classify(ctx, err))), connerr.Fix(err))
	}
	s, err := newPostgresStore(ctx, pool, opts)
	if err != nil {
		pool.Close()
		return nil, nil, redact.Error(err)
	}
	return s, pool, nil
}

// cancelOnTimeout makes a statement whose context ends stop on the server
// too: pgx then sends PostgreSQL a cancel request and waits for it (a
// quarter of a second at most) before giving up on the connection. By
// default it only closes the connection, and the server goes on running
// the statement, holding its locks (a prune batch's advisory lock, a
// row's FOR UPDATE) until it notices.
func cancelOnTimeout(cfg *pgconn.Config) {
	cfg.BuildContextWatcherHandler = func(conn *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: conn, DeadlineDelay: 250 * time.Millisecond}
	}
}

// Load implements Store in one round trip; LoadedAt is the database's now().
func (s *postgresStore) Load(ctx context.Context, key string) (*Record, error) {
	rec, err := scanRecord(s.pool.QueryRow(ctx, s.statement.load, key), true)
	if err != nil {
		return nil, s.fail(ctx, "load", err)
	}
	return rec, nil
}

// Insert implements Store with a plain INSERT: an existing key, live or
// expired, is a unique violation, which is ErrConflict.
func (s *postgresStore) Insert(ctx context.Context, key string, rec *Record) error {
	args, err := insertArgs(key, rec)
	if err != nil {
		return err
	}
	if _, err = s.pool.Exec(ctx, s.statement.insert, args...); err != nil {
		return s.fail(ctx, "insert", err)
	}
	return nil
}

// insertArgs returns the parameters of the insert statement for rec under
// key.
func insertArgs(key string, rec *Record) ([]any, error) {
	data, err := encodeValues(rec.Values)
	if err != nil {
		return nil, err
	}
	return []any{key, data, textParam(rec.UserID), rec.Persistent, timeParam(rec.Created), timeParam(rec.Expiry),
		microsParam(rec.IdleTimeout), timeOrNull(rec.IdleExpiry), timeOrNull(rec.LastSeen), textParam(rec.UserAgent), textParam(rec.IP)}, nil
}

// Apply implements Store in one UPDATE; one that changes nothing but the
// deadlines (a touch) writes only those.
func (s *postgresStore) Apply(ctx context.Context, key string, change Change) (*Record, error) {
	s.recent.drop(key) // the row changes: a Modify must read it again
	if change.touchOnly() {
		rec, err := scanRecord(s.pool.QueryRow(ctx, s.statement.touch, key, change.IdleTimeout.Microseconds(), change.TouchInterval.Microseconds()), false)
		if err != nil {
			return nil, s.fail(ctx, "touch", err)
		}
		return rec, nil
	}
	args, err := changeArgs(change)
	if err != nil {
		return nil, err
	}
	args = append(append([]any{key}, args...), change.IdleTimeout.Microseconds(), change.TouchInterval.Microseconds())
	statement := s.statement.apply
	if change.SessionIdleTimeout != nil {
		statement = s.statement.applyOwnIdle
	}
	rec, err := scanRecord(s.pool.QueryRow(ctx, statement, args...), false)
	if err != nil {
		return nil, s.missing(ctx, "apply", key, change, err)
	}
	return rec, nil
}

// Rekey implements Store in one statement: a DELETE of the old row feeding
// the INSERT of the new one.
func (s *postgresStore) Rekey(ctx context.Context, oldKey, newKey string, change Change, fresh *Record) (*Record, error) {
	s.recent.drop(oldKey)
	args, err := changeArgs(change)
	if err != nil {
		return nil, err
	}
	args = append(append([]any{oldKey, newKey}, args...), timeParam(fresh.Created), timeOrNull(fresh.IdleExpiry), textParam(fresh.UserAgent), textParam(fresh.IP), timeOrNull(fresh.Expiry))
	rec, err := scanRecord(s.pool.QueryRow(ctx, s.statement.rekey, args...), true)
	if err != nil {
		return nil, s.missing(ctx, "rekey", oldKey, change, err)
	}
	return rec, nil
}

// missing turns the error of an Apply or Rekey into the Store's. Those
// statements find no row both when the session is gone and when the change
// would take it over MaxSize; only a change that could have failed the size
// check pays for a second query to tell which.
func (s *postgresStore) missing(ctx context.Context, op, key string, change Change, err error) error {
	if !errors.Is(err, pgx.ErrNoRows) || change.MaxSize <= 0 || len(change.Set) == 0 {
		return s.fail(ctx, op, err)
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, s.statement.exists, key).Scan(&exists); err != nil {
		return s.fail(ctx, op, err)
	}
	if exists {
		return ErrTooLarge
	}
	return ErrNotFound
}

// changeArgs returns change as the parameters newChangeSQL numbers: clear,
// keys deleted, values set (a jsonb object), whether the user changes, the
// user, persistence, the new expiry, whether the session's own idle timeout
// changes, that timeout in microseconds, and the size cap.
func changeArgs(change Change) ([]any, error) {
	set, err := encodeValues(change.Set)
	if err != nil {
		return nil, err
	}
	deleted := change.Delete
	if deleted == nil {
		deleted = []string{}
	}
	var userID, persistent, idle any
	if change.UserID != nil {
		userID = textParam(*change.UserID)
	}
	if change.Persistent != nil {
		persistent = *change.Persistent
	}
	if change.SessionIdleTimeout != nil {
		idle = microsParam(*change.SessionIdleTimeout)
	}
	return []any{change.Clear, deleted, set, change.UserID != nil, userID, persistent, timeOrNull(change.Expiry),
		change.SessionIdleTimeout != nil, idle, change.MaxSize}, nil
}

// Modify implements Store. When this store wrote the session last (see
// recentRecords), fn runs on that record and one UPDATE stores the result
// if the row is still as written; otherwise, or when that UPDATE finds the
// row changed, Modify takes the row's lock: in one transaction of two
// round trips, BEGIN and the row's read under FOR UPDATE go together, fn
// runs, then the UPDATE and COMMIT go together. The row lock is held only
// across fn.
func (s *postgresStore) Modify(ctx context.Context, key string, fn func(*Record) error) (*Record, error) {
	if s.recent.known(key) {
		release, err := s.recent.hold(ctx, key)
		if err != nil {
			return nil, s.fail(ctx, "update", err)
		}
		defer release()
		if rec, done, err := s.modifyRecent(ctx, key, fn); done {
			if err != nil {
				return nil, s.fail(ctx, "update", err)
			}
			return rec, nil
		}
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.fail(ctx, "update", err)
	}
	// A connection left inside the transaction by an error goes back to
	// the pool, which closes it rather than reuse it (pgxpool checks the
	// transaction status on Release).
	defer conn.Release()
	rec, err := s.modify(ctx, conn.Conn(), key, fn)
	if err != nil {
		s.recent.drop(key) // gone, failed, or unknown: read it next time
	}
	if cb, ok := errors.AsType[*callbackError](err); ok {
		return nil, cb.err
	}
	if err != nil {
		return nil, s.fail(ctx, "update", err)
	}
	rec.LastSeen = rec.LoadedAt
	return rec, nil
}

// modifyRecent runs fn on the record this store wrote last under key and
// stores the result in one UPDATE if the row is still that version. It is
// not done when there is no such record, when the row changed since, or
// when fn fails: fn may have judged an outdated record, so the locked read
// runs it again on the row as it is.
func (s *postgresStore) modifyRecent(ctx context.Context, key string, fn func(*Record) error) (rec *Record, done bool, err error) {
	rec, version, ok := s.recent.take(key)
	if !ok || fn(rec) != nil {
		return nil, false, nil
	}
	args, size, err := modifiedArgs(key, rec)
	if err != nil {
		return nil, false, nil
	}
	err = s.pool.QueryRow(ctx, s.statement.updateIf, append(args, version)...).Scan(&version, &rec.LoadedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		s.recent.missed(key)
		return nil, false, nil
	case err != nil:
		s.recent.drop(key)
		return nil, true, err
	}
	rec.LastSeen = rec.LoadedAt
	s.recent.put(key, rec, version, size, true)
	return rec, true, nil
}

// modify is Modify on one connection. Any error leaves the transaction
// rolled back, or the connection for the pool to close.
func (s *postgresStore) modify(ctx context.Context, conn *pgx.Conn, key string, fn func(*Record) error) (*Record, error) {
	var rec *Record
	read := &pgx.Batch{}
	read.Queue("BEGIN")
	read.Queue(s.statement.lockForUpdate, key).QueryRow(func(row pgx.Row) error {
		var err error
		rec, err = scanRecord(row, true)
		return err
	})
	if err := conn.SendBatch(ctx, read).Close(); err != nil {
		return nil, rollback(ctx, conn, err)
	}
	if err := fn(rec); err != nil {
		return nil, rollback(ctx, conn, &callbackError{err})
	}
	args, size, err := modifiedArgs(key, rec)
	if err != nil {
		return nil, rollback(ctx, conn, err)
	}
	var version uint32
	write := &pgx.Batch{}
	write.Queue(s.statement.update, args...).QueryRow(func(row pgx.Row) error {
		return row.Scan(&version)
	})
	write.Queue("COMMIT")
	if err := conn.SendBatch(ctx, write).Close(); err != nil {
		return nil, rollback(ctx, conn, err)
	}
	s.recent.put(key, rec, version, size, false)
	return rec, nil
}

// modifiedArgs returns the parameters of the update and updateIf
// statements' modified columns for rec under key ($1 to $7), and the length
// of its encoded values.
func modifiedArgs(key string, rec *Record) ([]any, int, error) {
	data, err := encodeValues(rec.Values)
	if err != nil {
		return nil, 0, err
	}
	// Room for updateIf's version, $8.
	args := append(make([]any, 0, 8), key, data, textParam(rec.UserID), rec.Persistent, timeParam(rec.Expiry), microsParam(rec.IdleTimeout), timeOrNull(rec.IdleExpiry))
	return args, len(data), nil
}

// rollback ends the transaction modify began and returns err. When the
// rollback cannot be sent (the context is done, the connection broken), the
// connection stays inside the transaction and the pool closes it.
func rollback(ctx context.Context, conn *pgx.Conn, err error) error {
	if ctx.Err() == nil && conn.PgConn().TxStatus() != 'I' {
		_, _ = conn.Exec(ctx, "ROLLBACK")
	}
	return err
}

// callbackError carries the error of Modify's fn through the transaction,
// so that it comes back exactly as fn returned it.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// Destroy implements Store.
func (s *postgresStore) Destroy(ctx context.Context, key string) (*Info, error) {
	s.recent.drop(key)
	infos, err := s.infos(ctx, "delete", s.statement.delete, key)
	if err != nil || len(infos) == 0 {
		return nil, err
	}
	return &infos[0], nil
}

// ListUser implements UserIndex with one query on the user_id index.
func (s *postgresStore) ListUser(ctx context.Context, userID string) ([]Info, error) {
	return s.infos(ctx, "list user", s.statement.listUser, userID)
}

// DestroyUser implements UserIndex with one DELETE on the user_id index. An
// empty userID matches nothing: anonymous sessions have no user to sign
// out.
func (s *postgresStore) DestroyUser(ctx context.Context, userID, keep string) ([]Info, error) {
	return s.infos(ctx, "delete user", s.statement.deleteUser, userID, keep)
}

// TrimUser implements UserIndex with one DELETE on the user_id index.
func (s *postgresStore) TrimUser(ctx context.Context, userID string, max int) ([]Info, error) {
	return s.infos(ctx, "trim user", s.statement.trimUser, userID, max)
}

// Prune implements Pruner with one DELETE of at most limit rows. It holds
// a transaction-level advisory lock (Table.PruneLockKey) while it runs and
// deletes nothing when another process holds it, so that instances do not
// prune the same rows at once.
func (s *postgresStore) Prune(ctx context.Context, limit int) ([]Info, error) {
	return s.infos(ctx, "prune", s.statement.prune, limit, s.table.PruneLockKey())
}

// countLive counts the live sessions, for an Observer: one query that
// reads the whole table, so metrics sample it, never a request.
func (s *postgresStore) countLive(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, s.statement.count).Scan(&n); err != nil {
		return 0, s.fail(ctx, "count", err)
	}
	return n, nil
}

// infos runs a query of infoColumns.
func (s *postgresStore) infos(ctx context.Context, op, sql string, args ...any) ([]Info, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	infos, err := pgx.CollectRows(rows, scanInfo)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return infos, nil
}

func scanInfo(row pgx.CollectableRow) (Info, error) {
	var info Info
	var userID, userAgent, ip pgtype.Text
	var idleExpiry pgtype.Timestamptz
	err := row.Scan(&info.Key, &userID, &info.Created, &info.LastSeen, &info.Expiry, &idleExpiry, &userAgent, &ip)
	info.UserID, info.UserAgent, info.IP, info.IdleExpiry = userID.String, userAgent.String, ip.String, idleExpiry.Time
	return info, err
}

// The statements' parameters are passed as values pgx encodes without
// reflection: nil for NULL rather than a nil pointer, a string, an int64,
// a pgtype.Timestamptz rather than a time.Time (which pgx wraps again on
// every call). A write has up to seventeen of them; passed as pointers and
// time.Time, the eleven of a new session cost 16 allocations and 600 ns to
// encode, against 5 and 370 ns.

// textParam is s, with "" as NULL, which keeps anonymous sessions out of
// the partial user_id index.
func textParam(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// microsParam is d in microseconds, with a zero duration, "none", as NULL.
func microsParam(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return d.Microseconds()
}

// timeParam is t as a timestamptz.
func timeParam(t time.Time) any {
	return pgtype.Timestamptz{Time: t, Valid: true}
}

// timeOrNull is t as a timestamptz, with the zero time ("no idle timeout",
// "no change") as NULL.
func timeOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return timeParam(t)
}

// fail turns a database error into the Store's: no row is ErrNotFound, a
// duplicate key ErrConflict, and anything that means the database could not
// be reached wraps ErrUnavailable.
func (s *postgresStore) fail(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pgErr.Code {
		case "23505": // unique_violation
			return ErrConflict
		case "22P05": // untranslatable_character
			err = fmt.Errorf("a session value contains \\u0000, which PostgreSQL's jsonb cannot store: strip NUL characters before saving: %w", err)
		case "22023", "23514": // invalid_parameter_value, check_violation: the stored data is not an object
			err = fmt.Errorf("%w: the jsonb operators refused its data (%w)", ErrCorrupt, err)
		}
	}
	return &storeError{op: op, table: s.table.String(), err: classify(ctx, err)}
}

// storeError names the operation and table that failed.
type storeError struct {
	op, table string
	err       error
}

// Error passes the text through redact.Message, and a connection error's
// through connerr.Tidy: a request can open a new connection, whose error
// may quote the connection string and repeats each attempt.
func (e *storeError) Error() string {
	return redact.Message(fmt.Sprintf("session: postgres %s on %s: %v", e.op, e.table, connerr.Tidy(e.err)))
}

func (e *storeError) Unwrap() error { return e.err }

// unavailableError marks err as the database being out of reach, so that
// errors.Is finds both ErrUnavailable and whatever err wraps.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string   { return "store unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// classify wraps err in ErrUnavailable when it means the database could not
// answer: no connection, a dropped connection, the server shutting down, or
// the deadline passing while waiting for it. A context the caller canceled
// is left as it is: the client went away, the database did not.
func classify(ctx context.Context, err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	if ctx.Err() == context.DeadlineExceeded {
		// The server answered the cancel of a statement that ran past its
		// deadline (query_canceled) rather than the deadline cutting the
		// connection: the same outcome for the caller.
		return &unavailableError{fmt.Errorf("%w: %w", context.DeadlineExceeded, err)}
	}
	if unreachable(err) {
		return &unavailableError{err}
	}
	return err
}

func unreachable(err error) bool {
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now
			pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
