package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/defaults"
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
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err == nil {
		err = pool.Ping(ctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot connect to PostgreSQL at %s: %s: check DATABASE_URL, that the server is up, and that this host may connect (pg_hba.conf, firewall)",
			redact.DatabaseURL(databaseURL), redact.Password(err.Error(), databaseURL))
	}
	return pool, nil
}

// table is the session table a command works on, its schema resolved.
type table struct {
	pool  *pgxpool.Pool
	name  migrations.Table
	store *session.PostgresStore
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
	var store *session.PostgresStore
	if err == nil {
		store, err = session.NewPostgresStore(ctx, pool, session.PostgresOptions{Table: cfg.Table, ManualMigrations: true})
	}
	if err != nil {
		pool.Close()
		return nil, errors.New(redact.Password(err.Error(), cfg.DatabaseURL))
	}
	return &table{pool: pool, name: name, store: store}, nil
}

// checkSchema inspects the session table without changing it.
func checkSchema(ctx context.Context, pool *pgxpool.Pool, name string) (migrations.Schema, error) {
	t, err := migrations.ParseTable(name)
	if err != nil {
		return migrations.Schema{}, err
	}
	return migrations.Check(ctx, pool, t)
}

// withTable runs fn on the session table, reporting a failure as name's.
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
		return fail(fmt.Errorf("SESSION_TABLE: %s", redact.Password(err.Error(), cfg.DatabaseURL)))
	}
	if *status {
		return migrationStatus(ctx, pool, table, *asJSON, stdout, stderr)
	}
	applied, err := migrations.Apply(ctx, pool, table)
	for _, m := range applied {
		fmt.Fprintf(stdout, "Applied %03d_%s to %s.\n", m.Version, m.Name, table)
	}
	if err != nil {
		return fail(errors.New(redact.Password(err.Error(), cfg.DatabaseURL)))
	}
	if len(applied) == 0 {
		all := migrations.All()
		fmt.Fprintf(stdout, "%s is up to date (migration %03d).\n", table, all[len(all)-1].Version)
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
	fs := newFlags("prune", "[--env-file FILE]", `
Deletes expired sessions now, in small batches, and prints how many. The
app already does this every SESSION_PRUNE_INTERVAL; run it when "sessionctl
stats" shows expired rows piling up. Only one process prunes a table at a
time: if an app instance is pruning right now, this deletes nothing.`)
	flags := addDatabaseFlags(fs)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if cfg, ok := redisConfig(env, flags); ok {
		return redisPrune(ctx, cfg, flags, stdout, stderr)
	}
	return withTable(ctx, "prune", env, flags, stderr, func(ctx context.Context, t *table) error {
		n := 0
		for {
			pruned, err := t.store.Prune(ctx, pruneBatch)
			n += len(pruned)
			if err != nil {
				return err
			}
			if len(pruned) < pruneBatch {
				break
			}
		}
		fmt.Fprintf(stdout, "Pruned %d expired session(s) from %s.\n", n, t.name)
		return nil
	})
}

// pruneBatch is how many rows one prune statement deletes.
const pruneBatch = 1000

func runStats(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("stats", "[--json] [--env-file FILE]", `
Counts the session table's rows: live sessions, those signed in to a user,
expired rows waiting to be pruned (a number that only grows means no app
instance is pruning), and the table's size on disk. It reads the whole
table, so it is for operators and dashboards, not health checks.`)
	asJSON := fs.Bool("json", false, "print the numbers as JSON")
	flags := addDatabaseFlags(fs)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if cfg, ok := redisConfig(env, flags); ok {
		return redisStats(ctx, cfg, flags, *asJSON, stdout, stderr)
	}
	return withTable(ctx, "stats", env, flags, stderr, func(ctx context.Context, t *table) error {
		st, err := tableStats(ctx, t)
		if err != nil {
			return err
		}
		if *asJSON {
			writeJSON(stdout, struct {
				Table        string    `json:"table"`
				Live         int64     `json:"live"`
				WithUser     int64     `json:"with_user"`
				Expired      int64     `json:"expired"`
				TableBytes   int64     `json:"table_bytes"`
				DatabaseTime time.Time `json:"database_time"`
			}{t.name.String(), st.live, st.withUser, st.expired, st.tableBytes, st.now})
			return nil
		}
		fmt.Fprintf(stdout, "table          %s\n", t.name)
		fmt.Fprintf(stdout, "live sessions  %d\n", st.live)
		fmt.Fprintf(stdout, "with a user    %d\n", st.withUser)
		fmt.Fprintf(stdout, "expired rows   %d (deleted by the next prune)\n", st.expired)
		fmt.Fprintf(stdout, "table size     %s\n", formatBytes(st.tableBytes))
		return nil
	})
}

// stats describes the session table.
type stats struct {
	live, expired, withUser, tableBytes int64
	now                                 time.Time
}

// tableStats counts the table's rows in one query. It reads the whole
// table: for operators and dashboards, not health checks.
func tableStats(ctx context.Context, t *table) (stats, error) {
	const live = "LEAST(expires_at, idle_expires_at) > now()"
	var st stats
	err := t.pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE "+live+"), count(*) FILTER (WHERE NOT "+live+"),"+
		" count(*) FILTER (WHERE "+live+" AND user_id IS NOT NULL), pg_total_relation_size($1::text::regclass), now() FROM "+t.name.String(),
		t.name.String()).Scan(&st.live, &st.expired, &st.withUser, &st.tableBytes, &st.now)
	return st, err
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
