package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/connerr"
	"github.com/smartscheduler/session/internal/defaults"
	prunepkg "github.com/smartscheduler/session/internal/prune"
	"github.com/smartscheduler/session/internal/redact"
	"github.com/smartscheduler/session/migrations"
)

// defaultTimeout bounds each database subcommand unless --timeout says
// otherwise: long enough for a slow network, short enough that a firewall
// dropping packets is reported rather than waited on.
const defaultTimeout = 10 * time.Second

// databaseFlags are the flags every database subcommand takes.
type databaseFlags struct {
	envFile *string
	timeout *time.Duration
}

func addDatabaseFlags(fs *flag.FlagSet) databaseFlags {
	return databaseFlags{
		envFile: fs.String("env-file", "", "also read variables from `FILE` (the environment wins)"),
		timeout: fs.Duration("timeout", defaultTimeout, "give up on the database after this long"),
	}
}

// databaseConfig loads the configuration through the library and keeps
// only what reaching the session table needs: a weak secret, say, must not
// stop an operator from migrating before the first deploy.
func databaseConfig(env func(string) (string, bool), flags databaseFlags) (session.Config, error) {
	e, err := loadEnvironment(env, *flags.envFile)
	if err != nil {
		return session.Config{}, err
	}
	cfg, err := session.ConfigFromLookup(e.lookup)
	for _, p := range configErrors(err) {
		switch p.Variable {
		case "USE_POSTGRES", "DATABASE_URL", "SESSION_TABLE":
			return cfg, p
		}
	}
	if !cfg.UsePostgres {
		return cfg, errors.New("USE_POSTGRES is not true, so the app keeps sessions in its own memory, which sessionctl cannot reach: set USE_POSTGRES=true and DATABASE_URL (in the environment or the --env-file)")
	}
	if cfg.Table == "" {
		cfg.Table = defaults.Table
	}
	return cfg, nil
}

// configErrors returns the individual problems in an error from
// session.ConfigFromLookup or Config.Validate.
func configErrors(err error) []*session.ConfigError {
	var out []*session.ConfigError
	var walk func(error)
	walk = func(err error) {
		if ce, ok := err.(*session.ConfigError); ok {
			out = append(out, ce)
			return
		}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				walk(e)
			}
		} else if inner := errors.Unwrap(err); inner != nil {
			walk(inner)
		}
	}
	walk(err)
	return out
}

// openPool connects to the configured database, reporting where it tried
// (never the password) when it cannot.
func openPool(ctx context.Context, databaseURL string, timeout time.Duration) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL connection string: use the form postgres://user:password@host:5432/database")
	}
	pc.MaxConns = 2
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = timeout
	}
	// A statement past its --timeout is cancelled on the server too, so
	// that a slow prune batch releases its lock before the next one starts.
	pc.ConnConfig.BuildContextWatcherHandler = func(conn *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: conn, DeadlineDelay: 250 * time.Millisecond}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err == nil {
		err = pool.Ping(ctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		return nil, &connectError{
			problem: fmt.Sprintf("cannot connect to PostgreSQL at %s: %s", redact.DatabaseURL(databaseURL), redact.Message(connerr.Tidy(err).Error())),
			fix:     connerr.Fix(err),
		}
	}
	return pool, nil
}

// connectError is openPool's failure: what went wrong, cause first, and
// what to check, apart so that check can show them in their columns.
type connectError struct{ problem, fix string }

func (e *connectError) Error() string { return e.problem + ": " + e.fix }

// adminStore is what prune and revoke call on a store.
type adminStore interface {
	session.UserIndex
	session.Pruner
}

// administer returns s as an adminStore: NewPostgresStore's and
// NewRedisStore's stores are both.
func administer(s session.Store) (adminStore, error) {
	a, ok := s.(adminStore)
	if !ok {
		return nil, fmt.Errorf("the %T store has no user index or no pruner", s)
	}
	return a, nil
}

// table is the session table a command works on, its schema resolved.
type table struct {
	pool  *pgxpool.Pool
	name  migrations.Table
	store adminStore
	cfg   session.Config
}

// openTable opens the session table for prune, stats and revoke. The
// library checks the schema and, when it is missing or out of date, fails
// with the fix ("run sessionctl migrate"); it never migrates here.
func openTable(ctx context.Context, cfg session.Config, timeout time.Duration) (*table, error) {
	pool, err := openPool(ctx, cfg.DatabaseURL, timeout)
	if err != nil {
		return nil, err
	}
	name, err := migrations.ParseTable(cfg.Table)
	if err == nil {
		name, err = name.Resolve(ctx, pool)
	}
	var store adminStore
	if err == nil {
		var s session.Store
		if s, err = session.NewPostgresStore(ctx, pool, session.PostgresOptions{Table: cfg.Table, ManualMigrations: true}); err == nil {
			store, err = administer(s)
		}
	}
	if err != nil {
		pool.Close()
		return nil, redact.Error(err)
	}
	return &table{pool: pool, name: name, store: store, cfg: cfg}, nil
}

// checkSchema inspects the session table without changing it.
func checkSchema(ctx context.Context, pool *pgxpool.Pool, name string) (migrations.Schema, error) {
	t, err := migrations.ParseTable(name)
	if err != nil {
		return migrations.Schema{}, err
	}
	return migrations.Check(ctx, pool, t)
}

// withTable runs fn on the session table, which it opens within --timeout,
// with a context bounded by it too; work that bounds its own steps (prune)
// keeps to the command's context instead. A failure is reported as name's.
func withTable(ctx context.Context, name string, env func(string) (string, bool), flags databaseFlags, stderr io.Writer, fn func(context.Context, *table) error) int {
	cfg, err := databaseConfig(env, flags)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, *flags.timeout)
		defer cancel()
		var t *table
		t, err = openTable(ctx, cfg, *flags.timeout)
		if err == nil {
			defer t.pool.Close()
			err = fn(ctx, t)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "sessionctl %s: %v\n", name, err)
		return exitFailed
	}
	return exitOK
}

func runMigrate(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("migrate", "[--status [--json]] [--env-file FILE]", `
Creates the session table, or upgrades it, by applying the library's
pending migrations in order. Safe to run from several deploy jobs at once:
each migration runs once, under an advisory lock. Run it as a deploy step
when the app runs with SESSION_AUTO_MIGRATE=false.

With --status it changes nothing and lists each migration as applied or
pending; the exit status is then 1 if any is pending, so a deploy script
can gate on it.`)
	status := fs.Bool("status", false, "list applied and pending migrations instead of applying them")
	asJSON := fs.Bool("json", false, "with --status, print the list as JSON")
	flags := addDatabaseFlags(fs)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *asJSON && !*status {
		return usageError(fs, stderr, "--json goes with --status")
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "sessionctl migrate: %v\n", err)
		return exitFailed
	}
	cfg, err := databaseConfig(env, flags)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, *flags.timeout)
	defer cancel()
	pool, err := openPool(ctx, cfg.DatabaseURL, *flags.timeout)
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	table, err := migrations.ParseTable(cfg.Table)
	if err == nil {
		table, err = table.Resolve(ctx, pool)
	}
	if err != nil {
		return fail(fmt.Errorf("SESSION_TABLE: %w", redact.Error(err)))
	}
	if *status {
		return migrationStatus(ctx, pool, table, *asJSON, stdout, stderr)
	}
	applied, err := migrations.Apply(ctx, pool, table)
	for _, m := range applied {
		fmt.Fprintf(stdout, "Applied %03d_%s to %s.\n", m.Version, m.Name, table)
	}
	if err != nil {
		return fail(redact.Error(err))
	}
	if len(applied) == 0 {
		all := migrations.All()
		fmt.Fprintf(stdout, "%s is up to date (migration %03d).\n", table, all[len(all)-1].Version)
	}
	if err := migrateExpress(ctx, pool, cfg, stdout); err != nil {
		return fail(redact.Error(err))
	}
	return exitOK
}

// migrationState is one line of "migrate --status --json".
type migrationState struct {
	Version   int        `json:"version"`
	Name      string     `json:"name"`
	Applied   bool       `json:"applied"`
	AppliedAt *time.Time `json:"applied_at,omitempty"`
	// Unknown marks a migration the database has and this sessionctl does
	// not: the schema is newer than the tool.
	Unknown bool `json:"unknown,omitempty"`
}

func migrationStatus(ctx context.Context, pool *pgxpool.Pool, table migrations.Table, asJSON bool, stdout, stderr io.Writer) int {
	states, err := migrations.Status(ctx, pool, table)
	if err == nil {
		// "Pending: run sessionctl migrate" would be wrong advice for a
		// table that is not this library's: migrate cannot fix it.
		var schema migrations.Schema
		if schema, err = migrations.Check(ctx, pool, table); err == nil && (schema.Express || schema.Foreign) {
			err = schema.Err()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "sessionctl migrate: %v\n", err)
		return exitFailed
	}
	report := struct {
		Table      string           `json:"table"`
		Migrations []migrationState `json:"migrations"`
		Pending    int              `json:"pending"`
		Unknown    int              `json:"unknown"`
	}{Table: table.String(), Migrations: []migrationState{}}
	for _, s := range states {
		m := migrationState{Version: s.Version, Name: s.Name, Applied: s.Applied, Unknown: s.Unknown}
		if s.Applied {
			m.AppliedAt = &s.AppliedAt
		}
		switch {
		case s.Unknown:
			report.Unknown++
		case !s.Applied:
			report.Pending++
		}
		report.Migrations = append(report.Migrations, m)
	}
	if asJSON {
		writeJSON(stdout, report)
	} else {
		fmt.Fprintf(stdout, "Migrations of %s:\n", table)
		for _, m := range report.Migrations {
			state := "pending"
			switch {
			case m.Unknown:
				state = fmt.Sprintf("applied %s, unknown to this sessionctl", m.AppliedAt.UTC().Format(time.RFC3339))
			case m.Applied:
				state = "applied " + m.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "  %03d_%-20s %s\n", m.Version, m.Name, state)
		}
		switch {
		case report.Unknown > 0:
			fmt.Fprintln(stdout, "The table is newer than this sessionctl: upgrade sessionctl and the app.")
		case report.Pending > 0:
			fmt.Fprintf(stdout, "%d pending: run \"sessionctl migrate\".\n", report.Pending)
		}
	}
	if report.Pending > 0 || report.Unknown > 0 {
		return exitFailed
	}
	return exitOK
}

func runPrune(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("prune", "[--env-file FILE] [--timeout D]", `
Deletes expired sessions now, in batches, however many there are, and
prints how many. Progress (rows deleted, rate) goes to stderr every second.
Each batch is bounded by --timeout, never the whole run: a batch that takes
longer means a slow database (locks, I/O), so the batches get smaller and
the run goes on; only a database that does not answer stops it. Between
batches it rests as long as the last one took, so that the app's requests
keep their latency while it runs (a million rows take about three
minutes on a small server under load). The app already prunes every SESSION_PRUNE_INTERVAL; run this when "sessionctl
stats" shows expired rows piling up. Only one process prunes a table at a
time: while an app instance is pruning, this deletes nothing.`)
	flags := addDatabaseFlags(fs)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if cfg, ok := redisConfig(env, flags); ok {
		return redisPrune(ctx, cfg, flags, stdout, stderr)
	}
	// Each batch is bounded by --timeout, not the whole run: prune keeps to
	// the command's own context.
	return withTable(ctx, "prune", env, flags, stderr, func(_ context.Context, t *table) error {
		return prune(ctx, "expired session(s) from "+t.name.String(), *flags.timeout, stdout, stderr, func(ctx context.Context, limit int) (int, error) {
			pruned, err := t.store.Prune(ctx, limit)
			return len(pruned), err
		})
	})
}

// prune runs batch, which deletes at most limit expired rows, until none
// are left (see package prune), reporting progress to progress once a
// second and each slow batch as it comes, and the total to stdout as
// "Pruned N what".
func prune(ctx context.Context, what string, timeout time.Duration, stdout, progress io.Writer, batch func(ctx context.Context, limit int) (int, error)) error {
	start := time.Now()
	reported := start
	total, err := prunepkg.Run(ctx, timeout, batch, func(r prunepkg.Report) {
		now := time.Now()
		switch {
		case r.Slow:
			fmt.Fprintf(progress, "a batch took longer than --timeout %s: the database answers, but slowly (locks, I/O, the load); going on with batches of %d\n", timeout, r.Batch)
		case now.Sub(reported) >= time.Second:
			fmt.Fprintf(progress, "pruned %d so far (%.0f/s)\n", r.Deleted, float64(r.Deleted)/now.Sub(start).Seconds())
			reported = now
		}
	})
	if err != nil {
		return fmt.Errorf("%w (%d pruned)", err, total)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "Pruned %d %s in %s (%.0f/s).\n", total, what, elapsed.Round(time.Millisecond), float64(total)/max(elapsed.Seconds(), 1e-3))
	return nil
}

func runRevoke(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("revoke", "--user ID [--env-file FILE]", `
Ends every session of one user at once, on every app instance: the user's
next request, from any device, is signed out. ID is what the app passed to
Session.SetUser.`)
	user := fs.String("user", "", "the user `ID` whose sessions end")
	flags := addDatabaseFlags(fs)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *user == "" {
		return usageError(fs, stderr, "--user is required")
	}
	if cfg, ok := redisConfig(env, flags); ok {
		return redisRevoke(ctx, cfg, flags, *user, stdout, stderr)
	}
	return withTable(ctx, "revoke", env, flags, stderr, func(ctx context.Context, t *table) error {
		revoked, err := t.store.DestroyUser(ctx, *user, "")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Revoked %d session(s) of user %q.\n", len(revoked), *user)
		return nil
	})
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Encoding plain structs and slices cannot fail; a write error on
	// stdout has nowhere better to go.
	_ = enc.Encode(v)
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	value, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if value < unit {
			break
		}
		value, suffix = value/unit, s
	}
	return fmt.Sprintf("%.1f %s", value, suffix)
}
