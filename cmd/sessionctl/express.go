package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/defaults"
	"github.com/smartscheduler/session/internal/expressimport"
	"github.com/smartscheduler/session/internal/redact"
)

// The move from express-session and connect-pg-simple: "sessionctl
// express import" and "express prune", the express lines of stats and
// check, and what migrate creates for it. docs/migrating-from-express.md
// is the operator's guide.

// expressBatch is how many sessions one transaction of the bulk import
// moves: small enough that a batch holds its rows' locks for a moment.
const expressBatch = 500

func runExpress(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	const subcommands = `
Moves express-session's sessions (connect-pg-simple's table, named by
SESSION_EXPRESS_TABLE) into this library's table (SESSION_TABLE), so that
nobody is signed out by the move from Node. The app moves each user's
session at their first request by itself; these commands are for the
final cut-over:

  import   move every live session now (safe to repeat, and while the app serves)
  prune    delete the expired rows the Node table still holds

Run "sessionctl express <subcommand> --help" for their flags.`
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		w, code := stdout, exitOK
		if len(args) == 0 {
			w, code = stderr, exitUsage
		}
		fmt.Fprintf(w, "Usage: sessionctl express <import|prune> [flags]\n%s\n", subcommands)
		return code
	}
	switch args[0] {
	case "import":
		return runExpressImport(ctx, args[1:], env, stdout, stderr)
	case "prune":
		return runExpressPrune(ctx, args[1:], env, stdout, stderr)
	}
	fmt.Fprintf(stderr, "sessionctl express: unknown subcommand %q\n\nUsage: sessionctl express <import|prune> [flags]\n%s\n", args[0], subcommands)
	return exitUsage
}

func runExpressImport(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("express import", "[--dry-run] [--json] [--batch N] [--env-file FILE]", `
Moves every live session of connect-pg-simple's table (SESSION_EXPRESS_TABLE)
into this library's (SESSION_TABLE), in batches of one transaction each:
values, signed-in user (passport.user) and deadline (capped by
SESSION_LIFETIME) move; the row leaves the Node table in the transaction
that stores it here. The user's connect.sid keeps working: the app finds the
moved session at their next request and gives them this library's cookie.

Safe to run again, and while the app serves: a session is moved once,
whether by this command or by its user's request. Expired rows stay, for
"sessionctl express prune"; rows whose sess cannot be read stay too, and are
counted. Stop every Node instance first (see docs/migrating-from-express.md).`)
	dryRun := fs.Bool("dry-run", false, "read and count, change nothing")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	batch := fs.Int("batch", expressBatch, "sessions moved per transaction")
	flags := addDatabaseFlags(fs)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *batch < 1 {
		return usageError(fs, stderr, "--batch must be at least 1")
	}
	return withExpress(ctx, "express import", env, flags, stderr, func(ctx context.Context, s expressimport.Settings, cfg session.Config) error {
		// The import may take longer than --timeout, which bounds each
		// batch instead; an interrupt stops it between batches, each of
		// which commits whole or not at all.
		result, err := expressimport.Import(ctx, s, expressimport.ImportOptions{Batch: *batch, BatchTimeout: *flags.timeout, DryRun: *dryRun})
		if err != nil {
			return err
		}
		if *asJSON {
			writeJSON(stdout, struct {
				DryRun bool `json:"dry_run"`
				expressimport.Result
			}{*dryRun, result})
			return nil
		}
		verb := "Moved"
		if *dryRun {
			verb = "Would move"
		}
		fmt.Fprintf(stdout, "%s %d session(s) from %s into %s (%d batch(es)).\n", verb, result.Imported, quoted(cfg.ExpressTable), quoted(cfg.Table), result.Batches)
		if *dryRun {
			fmt.Fprintln(stdout, "Dry run: nothing was changed.")
		}
		fmt.Fprintf(stdout, "Left in %s: %d live (%d unreadable), %d expired", quoted(cfg.ExpressTable), result.Remaining, result.Unreadable, result.Expired)
		if result.Expired > 0 {
			fmt.Fprint(stdout, ` (delete them with "sessionctl express prune")`)
		}
		fmt.Fprintln(stdout, ".")
		if result.Unreadable > 0 {
			fmt.Fprintln(stdout, "Unreadable rows are left where they are: their users start new sessions, and the app deletes such a row when its cookie comes back.")
		}
		for _, d := range result.CookieDomains {
			if !strings.EqualFold(d, cfg.ExpressCookieDomain) {
				fmt.Fprintf(stdout, "express-session set connect.sid with Domain=%s: set SESSION_EXPRESS_COOKIE_DOMAIN=%s so that the app clears it.\n", d, d)
			}
		}
		return nil
	})
}

func runExpressPrune(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("express prune", "[--env-file FILE]", `
Deletes the expired rows of connect-pg-simple's table (SESSION_EXPRESS_TABLE),
which nothing deletes once the Node app is gone, and prints how many. Live
rows stay: "sessionctl express import" moves them. Each batch is bounded by
--timeout, never the whole run, as with "sessionctl prune".`)
	flags := addDatabaseFlags(fs)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	return withExpress(ctx, "express prune", env, flags, stderr, func(ctx context.Context, s expressimport.Settings, cfg session.Config) error {
		opening, cancel := context.WithTimeout(ctx, *flags.timeout)
		batch, err := expressimport.OpenPrune(opening, s)
		cancel()
		if err != nil {
			return err
		}
		return prune(ctx, "expired express-session row(s) from "+quoted(cfg.ExpressTable), *flags.timeout, stdout, stderr, batch)
	})
}

// withExpress runs fn with the import's settings, reporting a failure as
// name's.
func withExpress(ctx context.Context, name string, env func(string) (string, bool), flags databaseFlags, stderr io.Writer,
	fn func(context.Context, expressimport.Settings, session.Config) error) int {
	cfg, err := databaseConfig(env, flags)
	if err == nil && cfg.ExpressTable == "" {
		err = errors.New("SESSION_EXPRESS_TABLE is not set: set it to connect-pg-simple's table (\"session\" unless the Node app chose another), as the app has it")
	}
	if err == nil {
		connect, cancel := context.WithTimeout(ctx, *flags.timeout)
		var pool *pgxpool.Pool
		pool, err = openPool(connect, cfg.DatabaseURL, *flags.timeout)
		cancel()
		if err == nil {
			defer pool.Close()
			err = fn(ctx, expressSettings(pool, cfg), cfg)
			if err != nil {
				err = redact.Error(err)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "sessionctl %s: %s\n", name, strings.TrimPrefix(err.Error(), "session: "))
		return exitFailed
	}
	return exitOK
}

// expressSettings is the import's part of cfg.
func expressSettings(pool *pgxpool.Pool, cfg session.Config) expressimport.Settings {
	return expressimport.Settings{Pool: pool, Table: cfg.Table, ExpressTable: cfg.ExpressTable, TimeZone: cfg.ExpressTimeZone,
		Lifetime: cfg.Lifetime, IdleTimeout: cfg.IdleTimeout}
}

// quoted is a configured table name as the library's messages show it.
func quoted(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

// migrateExpress creates, when SESSION_EXPRESS_TABLE is set, what the
// import keeps beside the session table, for "sessionctl migrate".
func migrateExpress(ctx context.Context, pool *pgxpool.Pool, cfg session.Config, stdout io.Writer) error {
	if cfg.ExpressTable == "" {
		return nil
	}
	if err := expressimport.Migrate(ctx, expressSettings(pool, cfg)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Ready to move express-session's sessions from %s.\n", quoted(cfg.ExpressTable))
	return nil
}

// expressStats counts the move for "sessionctl stats", or returns nil when
// SESSION_EXPRESS_TABLE is not set.
func expressStats(ctx context.Context, t *table) (*expressimport.Counts, error) {
	if t.cfg.ExpressTable == "" {
		return nil, nil
	}
	c, err := expressimport.Count(ctx, expressSettings(t.pool, t.cfg))
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// printExpressStats adds the move's lines to stats' text.
func printExpressStats(w io.Writer, c *expressimport.Counts) {
	if c == nil {
		return
	}
	fmt.Fprintf(w, "express table  %s (connect-pg-simple's)\n", c.ExpressTable)
	fmt.Fprintf(w, "  to move      %d live session(s); %d expired row(s) for \"sessionctl express prune\"\n", c.Live, c.Expired)
	fmt.Fprintf(w, "  moved        %d by their user's request, %d in bulk (%d of those waiting for their user)\n", c.ImportedOnRequest, c.ImportedInBulk, c.Waiting)
}

// checkExpress is check's line on the move, when SESSION_EXPRESS_TABLE is
// set: the Node table, how far the move has come, and the two TimeZones
// that decide when a browser-session row expires.
func (c *checker) checkExpress(ctx context.Context, pool *pgxpool.Pool) {
	const name = "express import"
	problems := slices.Concat(c.take("SESSION_EXPRESS_TABLE"), c.take("SESSION_EXPRESS_COOKIE"), c.take("SESSION_EXPRESS_COOKIE_DOMAIN"),
		c.take("SESSION_EXPRESS_TIMEZONE"), c.take("SESSION_EXPRESS_SECRET"))
	if c.cfg.ExpressTable == "" {
		c.addProblems(name, problems)
		return
	}
	if len(problems) > 0 {
		c.addProblems(name, problems)
		return
	}
	if i := slices.IndexFunc(c.results, func(r result) bool { return r.Check == "session table" }); i >= 0 && c.results[i].Status == fail {
		c.add(name, skip, "needs the session table", "")
		return
	}
	cfg := c.cfg
	if cfg.Table == "" {
		cfg.Table = defaults.Table
	}
	counts, err := expressimport.Count(ctx, expressSettings(pool, cfg))
	if err != nil {
		c.add(name, fail, strings.TrimPrefix(redact.Message(err.Error()), "session: "), "")
		return
	}
	zone := counts.TimeZone + " (SESSION_EXPRESS_TIMEZONE)"
	if c.cfg.ExpressTimeZone == "" {
		zone = counts.TimeZone + " (SESSION_EXPRESS_TIMEZONE unset: this connection's)"
	}
	detail := fmt.Sprintf("%s: %d session(s) to move, %d expired row(s); moved %d by request and %d in bulk (%d waiting for their user); expire read in TimeZone %s, this connection's is %s",
		counts.ExpressTable, counts.Live, counts.Expired, counts.ImportedOnRequest, counts.ImportedInBulk, counts.Waiting, zone, counts.ConnectionTimeZone)
	if n := len(c.cfg.ExpressSecrets); n > 0 {
		detail += fmt.Sprintf("; %d secret(s) in SESSION_EXPRESS_SECRET verify express-session's cookie only: remove them with SESSION_EXPRESS_TABLE once the move is done", n)
	}
	if c.cfg.ExpressTimeZone == "" {
		if setBy := c.connectionZoneSetting(); setBy != "" {
			c.add(name, warn, detail, setBy+" sets this connection's TimeZone, and node-postgres reads neither: set SESSION_EXPRESS_TIMEZONE to the Node app's (SHOW TimeZone in psql, connected as the Node app connects)")
			return
		}
	}
	c.add(name, pass, detail, "")
}

// connectionZoneSetting names what gives the app's connections a TimeZone
// that the Node app's would not have (node-postgres sends none, and reads
// neither PGTZ nor PGOPTIONS), or "".
func (c *checker) connectionZoneSetting() string {
	for _, name := range []string{"PGTZ", "PGOPTIONS"} {
		if v, ok := c.env.lookup(name); ok && (name == "PGTZ" || strings.Contains(strings.ToLower(v), "timezone")) && strings.TrimSpace(v) != "" {
			return name
		}
	}
	if strings.Contains(strings.ToLower(c.cfg.DatabaseURL), "timezone") {
		return "DATABASE_URL"
	}
	return ""
}

// checkExpressSkipped adds check's express line when the database could
// not be reached to make it.
func (c *checker) checkExpressSkipped() {
	if c.cfg.ExpressTable != "" && !slices.ContainsFunc(c.results, func(r result) bool { return r.Check == "express import" }) {
		c.add("express import", skip, "needs the database", "")
	}
}
