package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session/migrations"
)

// PostgresOptions configures a PostgresStore. The zero value is ready to use.
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

	// ConnectTimeout bounds how long OpenPostgresStore waits for the first
	// connection, and each later connection attempt when the URL sets no
	// connect_timeout, so that an unreachable database fails requests
	// quickly instead of hanging them. The default value is 5 seconds.
	ConnectTimeout time.Duration

	// PruneBatch is how many expired rows Prune deletes per statement. Small
	// batches keep each transaction short, so pruning a large backlog never
	// holds locks for long. The default value is 1000.
	PruneBatch int
}

const (
	defaultConnectTimeout = 5 * time.Second
	defaultPruneBatch     = 1000
)

// PostgresStore is a Store that keeps sessions in a PostgreSQL table, shared
// by every process that uses the same table. Make one with NewPostgresStore
// or OpenPostgresStore.
type PostgresStore struct {
	pool      *pgxpool.Pool
	ownsPool  bool
	table     migrations.Table
	batch     int
	statement statements
}

// statements holds every query, built once because the table name is fixed
// per store; constant SQL text lets pgx cache each prepared statement.
type statements struct {
	load, insert, apply, rekey, lockForUpdate, update, touch,
	delete, deleteUser, listUser, prune, stats string
}

// live is true for a row whose deadline is still ahead of the database's
// clock. LEAST ignores NULL, so a row without an idle expiry is judged by its
// absolute expiry alone; it is also the expression the deadline index covers.
const live = "LEAST(expires_at, idle_expires_at) > now()"

func newStatements(t string) statements {
	const (
		metadata = "user_id, persistent, created_at, expires_at, idle_expires_at, version"
		columns  = "data, " + metadata
	)
	return statements{
		load:   "SELECT " + columns + ", now() FROM " + t + " WHERE id = $1 AND " + live,
		insert: "INSERT INTO " + t + " (id, " + columns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, 1)",
		// The jsonb operators apply the change to the row as it is now,
		// under the row lock the UPDATE takes: no read-modify-write race.
		apply: "UPDATE " + t + " SET data = (CASE WHEN $2 THEN '{}'::jsonb ELSE data END - $3::text[]) || $4::jsonb," +
			" user_id = CASE WHEN $5 THEN $6 ELSE user_id END, persistent = COALESCE($7, persistent)," +
			" idle_expires_at = CASE WHEN $8::bigint > 0 THEN LEAST(now() + $8::bigint * interval '1 microsecond', expires_at) ELSE idle_expires_at END," +
			" version = version + 1 WHERE id = $1 AND " + live + " RETURNING " + metadata + ", now()",
		// DELETE waits for a concurrent writer's row lock and returns the
		// row as that writer left it; no row means no session to move.
		rekey: "WITH old AS (DELETE FROM " + t + " WHERE id = $1 AND " + live + " RETURNING data, user_id, persistent)" +
			" INSERT INTO " + t + " (id, " + columns + ") SELECT $2::text, (CASE WHEN $3::boolean THEN '{}'::jsonb ELSE data END - $4::text[]) || $5::jsonb," +
			" CASE WHEN $6::boolean THEN $7::text ELSE user_id END, COALESCE($8::boolean, persistent), $9::timestamptz, $10::timestamptz, $11::timestamptz, 1" +
			" FROM old RETURNING " + columns + ", now()",
		lockForUpdate: "SELECT " + columns + ", now() FROM " + t + " WHERE id = $1 AND " + live + " FOR UPDATE",
		update: "UPDATE " + t + " SET data = $2, user_id = $3, persistent = $4, created_at = $5, expires_at = $6, idle_expires_at = $7, version = version + 1" +
			" WHERE id = $1 RETURNING version",
		touch:      "UPDATE " + t + " SET idle_expires_at = $2 WHERE id = $1 AND " + live,
		delete:     "DELETE FROM " + t + " WHERE id = $1",
		deleteUser: "DELETE FROM " + t + " WHERE user_id = $1",
		listUser: "SELECT id, user_id, created_at, expires_at, idle_expires_at FROM " + t +
			" WHERE user_id = $1 AND " + live + " ORDER BY created_at DESC, id",
		// SKIP LOCKED: a row held by an Update in flight is left for the
		// next run rather than stalling this one.
		prune: "DELETE FROM " + t + " WHERE id IN (SELECT id FROM " + t +
			" WHERE LEAST(expires_at, idle_expires_at) <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)",
		stats: "SELECT count(*) FILTER (WHERE " + live + "), count(*) FILTER (WHERE NOT " + live + ")," +
			" count(*) FILTER (WHERE " + live + " AND user_id IS NOT NULL), pg_total_relation_size($1::text::regclass), now() FROM " + t,
	}
}

// NewPostgresStore returns a store using pool, which stays the caller's:
// Close does not close it. It migrates the schema, or with
// ManualMigrations checks it, before returning.
func NewPostgresStore(ctx context.Context, pool *pgxpool.Pool, opts PostgresOptions) (*PostgresStore, error) {
	s, err := newPostgresStore(ctx, pool, opts)
	if err != nil {
		return nil, err
	}
	if err := s.prepare(ctx, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenPostgresStore connects to databaseURL (a postgres:// URL or keyword/value
// string, as pgx accepts) with a pool the store owns and Close closes, waits
// at most ConnectTimeout for a first connection, then migrates or checks the
// schema as NewPostgresStore does. Its errors name the host, port and
// database but never the password or the URL.
func OpenPostgresStore(ctx context.Context, databaseURL string, opts PostgresOptions) (*PostgresStore, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("session: DATABASE_URL is not a valid PostgreSQL URL (%s): fix its syntax, e.g. postgres://user:password@host:5432/dbname",
			RedactPassword(err.Error(), databaseURL))
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = defaultConnectTimeout
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	where := fmt.Sprintf("host %s port %d database %q", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("session: open PostgreSQL pool for %s: %s", where, RedactPassword(err.Error(), databaseURL))
	}
	pingCtx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("session: connect to PostgreSQL at %s within %v: check DATABASE_URL and that the server is up: %w",
			where, opts.ConnectTimeout, &redactedError{msg: RedactPassword(err.Error(), databaseURL), err: classify(ctx, err)})
	}
	s, err := newPostgresStore(ctx, pool, opts)
	if err == nil {
		s.ownsPool = true
		err = s.prepare(ctx, opts)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// redactedError replaces the text of err, which might quote the connection
// string, by msg, while errors.Is and errors.As still see err.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

var (
	urlUserInfo = regexp.MustCompile(`://([^@/?#]*)@`)
	kvPassword  = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]*)`)
)

// RedactPassword removes from msg the connection string databaseURL and
// every form of its password (plain, percent-encoded, quoted), for tools
// that must show a database error without leaking the credentials pgx or
// net/url may have quoted in it.
func RedactPassword(msg, databaseURL string) string {
	connString := databaseURL
	secrets := []string{connString}
	if m := urlUserInfo.FindStringSubmatch(connString); m != nil {
		if _, pw, ok := strings.Cut(m[1], ":"); ok {
			secrets = append(secrets, pw)
			if dec, err := url.PathUnescape(pw); err == nil {
				secrets = append(secrets, dec)
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(connString, -1) {
		pw := strings.Trim(m[1], "'")
		secrets = append(secrets, m[1], pw)
		if dec, err := url.QueryUnescape(pw); err == nil {
			secrets = append(secrets, dec)
		}
	}
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

func newPostgresStore(ctx context.Context, pool *pgxpool.Pool, opts PostgresOptions) (*PostgresStore, error) {
	name := opts.Table
	if name == "" {
		name = migrations.DefaultTable
	}
	table, err := migrations.ParseTable(name)
	if err != nil {
		return nil, fmt.Errorf("session: PostgresOptions.Table: %w", err)
	}
	table, err = table.Resolve(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("session: %w", classify(ctx, err))
	}
	batch := opts.PruneBatch
	if batch <= 0 {
		batch = defaultPruneBatch
	}
	return &PostgresStore{pool: pool, table: table, batch: batch, statement: newStatements(table.String())}, nil
}

// prepare migrates the schema or, with ManualMigrations, checks it.
func (s *PostgresStore) prepare(ctx context.Context, opts PostgresOptions) error {
	if !opts.ManualMigrations {
		return s.Migrate(ctx)
	}
	schema, err := s.CheckSchema(ctx)
	if err != nil {
		return err
	}
	return schema.Err()
}

// Migrate applies the pending schema migrations; see package migrations. It
// is safe to call from many processes at once.
func (s *PostgresStore) Migrate(ctx context.Context) error {
	if _, err := migrations.Apply(ctx, s.pool, s.table); err != nil {
		return fmt.Errorf("session: %w", classify(ctx, err))
	}
	return nil
}

// MigrationStatus lists the applied and pending migrations of the table.
func (s *PostgresStore) MigrationStatus(ctx context.Context) ([]migrations.State, error) {
	states, err := migrations.Status(ctx, s.pool, s.table)
	if err != nil {
		return nil, fmt.Errorf("session: %w", classify(ctx, err))
	}
	return states, nil
}

// Close closes the pool if OpenPostgresStore opened it. A pool passed to
// NewPostgresStore is left open for its owner.
func (s *PostgresStore) Close() {
	if s.ownsPool {
		s.pool.Close()
	}
}

// Pool returns the store's connection pool, for health checks and tools.
func (s *PostgresStore) Pool() *pgxpool.Pool { return s.pool }

// Table returns the session table, with its schema resolved.
func (s *PostgresStore) Table() migrations.Table { return s.table }

// Load implements Store in one round trip; LoadedAt is the database's now().
func (s *PostgresStore) Load(ctx context.Context, key string) (*Record, error) {
	rec, err := scanRecord(s.pool.QueryRow(ctx, s.statement.load, key))
	if err != nil {
		return nil, s.fail(ctx, "load", err)
	}
	return rec, nil
}

// Insert implements Store with a plain INSERT: an existing key, live or
// expired, is ErrConflict.
func (s *PostgresStore) Insert(ctx context.Context, key string, rec *Record) error {
	data, err := encodeValues(rec.Values)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, s.statement.insert, key, data, nullString(rec.UserID), rec.Persistent,
		rec.Created, rec.Expiry, nullTime(rec.IdleExpiry))
	if err != nil {
		return s.fail(ctx, "insert", err)
	}
	rec.Version = 1
	return nil
}

// Apply implements Store in one UPDATE.
func (s *PostgresStore) Apply(ctx context.Context, key string, change Change) (*Record, error) {
	args, err := changeArgs(change)
	if err != nil {
		return nil, err
	}
	rec, err := scanMetadata(s.pool.QueryRow(ctx, s.statement.apply, append([]any{key}, args...)...))
	if err != nil {
		return nil, s.fail(ctx, "apply", err)
	}
	return rec, nil
}

// Rekey implements Store in one statement: a DELETE of the old row feeding
// the INSERT of the new one.
func (s *PostgresStore) Rekey(ctx context.Context, oldKey, newKey string, change Change, fresh *Record) (*Record, error) {
	args, err := changeArgs(change)
	if err != nil {
		return nil, err
	}
	rec, err := scanRecord(s.pool.QueryRow(ctx, s.statement.rekey, append([]any{oldKey, newKey}, append(args[:len(args)-1],
		fresh.Created, fresh.Expiry, nullTime(fresh.IdleExpiry))...)...))
	if err != nil {
		return nil, s.fail(ctx, "rekey", err)
	}
	return rec, nil
}

// changeArgs returns change as the parameters the apply and rekey
// statements share: clear, keys deleted, values set (a jsonb object),
// whether the user changes, the user, persistence, and last the idle
// timeout in microseconds, which rekey does not take.
func changeArgs(change Change) ([]any, error) {
	set, err := encodeValues(change.Set)
	if err != nil {
		return nil, err
	}
	deleted := change.Delete
	if deleted == nil {
		deleted = []string{}
	}
	var userID *string
	if change.UserID != nil {
		userID = nullString(*change.UserID)
	}
	return []any{change.Clear, deleted, set, change.UserID != nil, userID, change.Persistent, change.IdleTimeout.Microseconds()}, nil
}

// Update implements Store in one transaction holding the row lock from
// SELECT ... FOR UPDATE until the new version commits.
func (s *PostgresStore) Update(ctx context.Context, key string, fn func(*Record) error) (*Record, error) {
	var rec *Record
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		rec, err = scanRecord(tx.QueryRow(ctx, s.statement.lockForUpdate, key))
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return &callbackError{err}
		}
		data, err := encodeValues(rec.Values)
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, s.statement.update, key, data, nullString(rec.UserID), rec.Persistent,
			rec.Created, rec.Expiry, nullTime(rec.IdleExpiry)).Scan(&rec.Version)
	})
	if cb, ok := errors.AsType[*callbackError](err); ok {
		return nil, cb.err
	}
	if err != nil {
		// BeginFunc returns the callback's error as it is: this is the one
		// place Update's database errors become the Store's.
		return nil, s.fail(ctx, "update", err)
	}
	// The caller gets its own copy: fn may have kept rec.
	return rec.Clone(), nil
}

// callbackError carries the error of Update's fn through the transaction,
// so that it comes back exactly as fn returned it.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// Touch implements Store. It writes only idle_expires_at, leaving the values
// and version alone.
func (s *PostgresStore) Touch(ctx context.Context, key string, idleExpiry time.Time) error {
	tag, err := s.pool.Exec(ctx, s.statement.touch, key, nullTime(idleExpiry))
	if err != nil {
		return s.fail(ctx, "touch", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Delete implements Store.
func (s *PostgresStore) Delete(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, s.statement.delete, key); err != nil {
		return s.fail(ctx, "delete", err)
	}
	return nil
}

// DeleteUser implements Store with one DELETE on the user_id index. An empty
// userID matches nothing: anonymous sessions have no user to sign out.
func (s *PostgresStore) DeleteUser(ctx context.Context, userID string) (int, error) {
	tag, err := s.pool.Exec(ctx, s.statement.deleteUser, userID)
	if err != nil {
		return 0, s.fail(ctx, "delete user", err)
	}
	return int(tag.RowsAffected()), nil
}

// ListUser implements Store with one query on the user_id index.
func (s *PostgresStore) ListUser(ctx context.Context, userID string) ([]Info, error) {
	rows, err := s.pool.Query(ctx, s.statement.listUser, userID)
	if err != nil {
		return nil, s.fail(ctx, "list user", err)
	}
	infos, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Info, error) {
		var info Info
		var idle *time.Time
		err := row.Scan(&info.Key, &info.UserID, &info.Created, &info.Expiry, &idle)
		if idle != nil {
			info.IdleExpiry = *idle
		}
		return info, err
	})
	if err != nil {
		return nil, s.fail(ctx, "list user", err)
	}
	return infos, nil
}

// Prune implements Store. It deletes expired rows in batches of PruneBatch,
// each its own statement so none holds locks for long, until a batch comes
// back short. It first takes a session-level advisory lock
// (Table().PruneLockKey()) on one connection and returns 0 at once if
// another process holds it, so that only one instance prunes at a time.
func (s *PostgresStore) Prune(ctx context.Context) (int, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, s.fail(ctx, "prune", err)
	}
	defer conn.Release()
	var locked bool
	key := s.table.PruneLockKey()
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&locked); err != nil {
		return 0, s.fail(ctx, "prune", err)
	}
	if !locked {
		return 0, nil
	}
	defer func() {
		// Unlock even if ctx is done. If that fails the lock must not go
		// back to the pool with the connection, so the connection is
		// closed, which releases it.
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(unlockCtx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			// Release destroys a closed connection instead of pooling it.
			_ = conn.Conn().Close(unlockCtx)
		}
	}()
	total := 0
	for {
		tag, err := conn.Exec(ctx, s.statement.prune, s.batch)
		if err != nil {
			return total, s.fail(ctx, "prune", err)
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < int64(s.batch) {
			return total, nil
		}
	}
}

// PostgresStats describes the session table, for monitoring and
// "sessionctl stats".
type PostgresStats struct {
	// Live counts sessions that have not expired.
	Live int64
	// Expired counts expired rows that Prune has yet to delete. A number
	// that only grows means no instance is pruning.
	Expired int64
	// WithUser counts live sessions that belong to a user.
	WithUser int64
	// TableBytes is the table's size on disk, indexes and TOAST included.
	TableBytes int64
	// Now is the database's clock when the numbers were taken.
	Now time.Time
}

// Stats counts the table's rows in one query. It reads the whole table, so
// call it from tools and dashboards, not per request.
func (s *PostgresStore) Stats(ctx context.Context) (PostgresStats, error) {
	var st PostgresStats
	err := s.pool.QueryRow(ctx, s.statement.stats, s.table.String()).
		Scan(&st.Live, &st.Expired, &st.WithUser, &st.TableBytes, &st.Now)
	if err != nil {
		return st, s.fail(ctx, "stats", err)
	}
	return st, nil
}

// Now returns the database's clock, which decides when sessions expire. Tools
// compare it with the application's clock to find skew.
func (s *PostgresStore) Now(ctx context.Context) (time.Time, error) {
	var now time.Time
	if err := s.pool.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		return now, s.fail(ctx, "read clock", err)
	}
	return now, nil
}

// PostgresSchema is what CheckSchema found.
type PostgresSchema struct {
	// Table is the quoted, qualified session table.
	Table string
	// Exists reports whether the table exists.
	Exists bool
	// Problems lists each expected column that is missing or has another
	// type, as "column: problem".
	Problems []string
	// Applied is the highest migration recorded as applied, 0 for none.
	Applied int
	// Latest is the highest migration this version of the library has.
	Latest int
}

// expectedColumns is the schema the queries rely on, as format_type spells
// each type.
var expectedColumns = []struct{ name, typ string }{
	{"id", "text"},
	{"data", "jsonb"},
	{"user_id", "text"},
	{"persistent", "boolean"},
	{"created_at", "timestamp with time zone"},
	{"expires_at", "timestamp with time zone"},
	{"idle_expires_at", "timestamp with time zone"},
	{"version", "bigint"},
}

// Err returns nil if the schema is ready for the store, or an error saying
// what is wrong and how to fix it.
func (sc PostgresSchema) Err() error {
	const fix = `run "sessionctl migrate" (or set SESSION_AUTO_MIGRATE=true)`
	switch {
	case !sc.Exists:
		return fmt.Errorf("session: session table %s does not exist: %s", sc.Table, fix)
	case len(sc.Problems) > 0:
		return fmt.Errorf("session: session table %s does not have the expected columns (%s): it was not created by these migrations; rename it or set PostgresOptions.Table", sc.Table, strings.Join(sc.Problems, "; "))
	case sc.Applied > sc.Latest:
		return fmt.Errorf("session: session table %s is at migration %d but this version of the library knows only up to %d: upgrade the library", sc.Table, sc.Applied, sc.Latest)
	case sc.Applied > 0 && sc.Applied < sc.Latest:
		return fmt.Errorf("session: session table %s is at migration %d and needs %d: %s", sc.Table, sc.Applied, sc.Latest, fix)
	}
	return nil
}

// CheckPostgresSchema is CheckSchema for a table no store has opened, for
// tools that must report a missing or outdated table instead of failing on
// it as OpenPostgresStore does with ManualMigrations.
func CheckPostgresSchema(ctx context.Context, pool *pgxpool.Pool, table string) (PostgresSchema, error) {
	s, err := newPostgresStore(ctx, pool, PostgresOptions{Table: table})
	if err != nil {
		return PostgresSchema{}, err
	}
	return s.CheckSchema(ctx)
}

// CheckSchema reports whether the session table exists with the columns the
// store needs, and which migration it is at. It changes nothing. A table
// created by hand from the migration SQL, with no migrations table, passes
// if its columns are right.
func (s *PostgresStore) CheckSchema(ctx context.Context) (PostgresSchema, error) {
	sc := PostgresSchema{Table: s.table.String()}
	all := migrations.All()
	sc.Latest = all[len(all)-1].Version
	rows, err := s.pool.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, s.table.String())
	if err != nil {
		return sc, s.fail(ctx, "check schema", err)
	}
	found := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return sc, s.fail(ctx, "check schema", err)
		}
		found[name] = typ
	}
	if err := rows.Err(); err != nil {
		return sc, s.fail(ctx, "check schema", err)
	}
	sc.Exists = len(found) > 0
	if !sc.Exists {
		return sc, nil
	}
	for _, c := range expectedColumns {
		switch typ, ok := found[c.name]; {
		case !ok:
			sc.Problems = append(sc.Problems, c.name+": missing")
		case typ != c.typ:
			sc.Problems = append(sc.Problems, fmt.Sprintf("%s: type %s, want %s", c.name, typ, c.typ))
		}
	}
	states, err := migrations.Status(ctx, s.pool, s.table)
	if err != nil {
		return sc, s.fail(ctx, "check schema", err)
	}
	for _, st := range states {
		if st.Applied && st.Version > sc.Applied {
			sc.Applied = st.Version
		}
	}
	return sc, nil
}

// encodeValues returns values as a JSON object in a string: pgx sends a
// string as text, which PostgreSQL parses as jsonb in every query mode,
// where a []byte would go as bytea under the simple protocol and exec mode.
func encodeValues(values map[string]json.RawMessage) (string, error) {
	if values == nil {
		return "{}", nil
	}
	data, err := json.Marshal(values)
	if err != nil {
		return "", fmt.Errorf("session: encode values: %w", err)
	}
	return string(data), nil
}

// nullString stores "" as NULL, which keeps anonymous sessions out of the
// partial user_id index.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// nullTime stores the zero time, "no idle timeout", as NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// fail turns a database error into the Store's: no row is ErrNotFound, a
// duplicate key ErrConflict, and anything that means the database could not
// be reached wraps ErrUnavailable.
func (s *PostgresStore) fail(ctx context.Context, op string, err error) error {
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
		}
	}
	return &storeError{op: op, table: s.table.String(), err: classify(ctx, err)}
}

// storeError names the operation and table that failed.
type storeError struct {
	op, table string
	err       error
}

func (e *storeError) Error() string {
	return fmt.Sprintf("session: postgres %s on %s: %v", e.op, e.table, e.err)
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
