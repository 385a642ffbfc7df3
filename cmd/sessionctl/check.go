package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/defaults"
	"github.com/smartscheduler/session/internal/redact"
	"github.com/smartscheduler/session/migrations"
)

// status is the outcome of one check.
type status string

const (
	pass status = "pass"
	warn status = "warn" // works, but is a risk or a cost worth knowing
	fail status = "fail" // production would refuse it, or users would lose sessions
	skip status = "skip" // could not be checked because an earlier check failed
)

// result is one line of the checklist, and one element of --json.
type result struct {
	Check  string `json:"check"`
	Status status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// Thresholds above which check warns.
const (
	maxClockSkew = 2 * time.Second
	// Every request that touches its session waits for at least one round
	// trip, so a slow database is a slow app.
	maxLatency = 100 * time.Millisecond
)

func runCheck(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("check", "[--env-file FILE] [--json]", `
Checks the configuration an app would start with against the production
checklist: production mode, USE_POSTGRES, DATABASE_URL, the database (is it
reachable, how fast, is its clock right), the session table and its
migrations, SESSION_SECRET and SESSION_SECRET_PREVIOUS, and the cookie the
app will send. Prints one line per check, PASS, WARN, FAIL or SKIP, and for
each problem the fix. Exits 1 if any check fails. It changes nothing: the
session table is inspected, never created.

Run it on the app's host, with the app's environment: the clock check
compares the database's clock with this machine's.`)
	envFile := fs.String("env-file", "", "also read variables from `FILE` (the environment wins)")
	asJSON := fs.Bool("json", false, "print the results as a JSON array of {check, status, detail, fix}")
	timeout := fs.Duration("timeout", 5*time.Second, "give up on the database after this long")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	e, err := loadEnvironment(env, *envFile)
	if err != nil {
		fmt.Fprintf(stderr, "sessionctl check: %v\n", err)
		return exitFailed
	}
	results := check(ctx, e, *envFile, *timeout)
	if *asJSON {
		writeJSON(stdout, results)
	} else {
		printResults(stdout, results)
	}
	for _, r := range results {
		if r.Status == fail {
			return exitFailed
		}
	}
	return exitOK
}

func printResults(w io.Writer, results []result) {
	width := 0
	for _, r := range results {
		width = max(width, len(r.Check))
	}
	counts := map[status]int{}
	for _, r := range results {
		counts[r.Status]++
		line := r.Detail
		if r.Fix != "" {
			line += ": " + r.Fix
		}
		fmt.Fprintf(w, "%-4s  %-*s  %s\n", strings.ToUpper(string(r.Status)), width, r.Check, line)
	}
	fmt.Fprintf(w, "\n%d passed, %d warnings, %d failed, %d skipped\n", counts[pass], counts[warn], counts[fail], counts[skip])
}

// checker gathers the results of one run.
type checker struct {
	env     environment
	envFile string
	cfg     session.Config
	// problems are the library's objections to the configuration judged
	// as production, by variable; each check takes the ones it reports,
	// and any left over get lines of their own.
	problems map[string][]*session.ConfigError
	order    []string // variables in the order the library reported them
	results  []result
}

func (c *checker) add(name string, st status, detail, fix string) {
	c.results = append(c.results, result{Check: name, Status: st, Detail: detail, Fix: fix})
}

// take removes and returns the library's problems with variable.
func (c *checker) take(variable string) []*session.ConfigError {
	p := c.problems[variable]
	delete(c.problems, variable)
	return p
}

// addProblems reports each problem as a failure of check name.
func (c *checker) addProblems(name string, problems []*session.ConfigError) {
	for _, p := range problems {
		detail := p.Problem
		if p.Variable != name {
			detail = p.Variable + " " + detail
		}
		c.add(name, fail, detail, p.Fix)
	}
}

// check runs the checklist. The configuration is judged as production
// judges it even when NODE_ENV says otherwise: the point is to know what
// production would make of it.
func check(ctx context.Context, e environment, envFile string, timeout time.Duration) []result {
	cfg, cfgErr := session.ConfigFromLookup(e.lookup)
	// The same variables read as production give the parse errors and
	// production's verdict on the rest, whatever NODE_ENV says; only the
	// verdict on NODE_ENV itself comes from the variables as they are.
	_, err := session.ConfigFromLookup(func(name string) (string, bool) {
		if name == "NODE_ENV" || name == "APP_ENV" {
			return "production", true
		}
		return e.lookup(name)
	})
	problems := configErrors(err)
	for _, p := range configErrors(cfgErr) {
		if p.Variable == "NODE_ENV" {
			problems = append(problems, p)
		}
	}
	c := &checker{env: e, envFile: envFile, cfg: cfg, problems: map[string][]*session.ConfigError{}}
	for _, p := range problems {
		if _, ok := c.problems[p.Variable]; !ok {
			c.order = append(c.order, p.Variable)
		}
		c.problems[p.Variable] = append(c.problems[p.Variable], p)
	}

	c.checkProduction()
	if c.cfg.UseRedis {
		c.checkRedis(ctx, timeout) // redis.go
	} else {
		c.checkUsePostgres()
		if c.checkDatabaseURL() {
			c.checkDatabase(ctx, timeout)
		} else {
			for _, name := range []string{"database reachable", "session table", "database clock"} {
				c.add(name, skip, "needs a usable DATABASE_URL", "")
			}
		}
	}
	c.checkExpressSkipped()
	c.checkSecret()
	c.checkPreviousSecrets()
	c.checkCookie()
	c.checkIdleTimeout()
	c.checkSizeCap()
	for _, variable := range c.order {
		c.addProblems(variable, c.take(variable))
	}
	return c.results
}

// checkProduction reports the mode the app will run in and why, as the
// library decides it: production unless NODE_ENV (or APP_ENV) names
// development.
func (c *checker) checkProduction() {
	const name = "production mode"
	const fix = "set NODE_ENV=production: production mode makes cookies Secure and refuses weak secrets and the memory store"
	if conflicts := c.take("NODE_ENV"); len(conflicts) > 0 {
		c.addProblems(name, conflicts)
		return
	}
	variable := "NODE_ENV"
	value, set := c.env.lookup(variable)
	if strings.TrimSpace(value) == "" {
		if v, ok := c.env.lookup("APP_ENV"); ok && strings.TrimSpace(v) != "" {
			variable, value, set = "APP_ENV", v, true
		}
	}
	detail := logged(c.cfg, "mode").String() + c.env.origin(variable)
	switch {
	case c.cfg.Production && strings.Trim(value, " \t\r\n") == "production":
		c.add(name, pass, detail, "")
	case c.cfg.Production:
		c.add(name, warn, detail, "set "+variable+"=production exactly: this library runs production checks for any value but development, dev, test and local, "+
			"but other code comparing "+variable+` with "production" (Express, for one) runs as in development`)
	case !set:
		c.add(name, fail, "NODE_ENV is not set", fix)
	default:
		c.add(name, fail, detail, fix)
	}
}

// logged returns the value of attribute key in cfg's LogValue, which shows
// the settings as the app will run with them, defaults applied: the mode
// and why (`production (NODE_ENV="production")`), the effective size cap.
func logged(cfg session.Config, key string) slog.Value {
	for _, a := range cfg.LogValue().Group() {
		if a.Key == key {
			return a.Value
		}
	}
	return slog.Value{}
}

func (c *checker) checkUsePostgres() {
	const name = "USE_POSTGRES"
	problems := c.take("USE_POSTGRES")
	switch {
	case c.cfg.UsePostgres:
		c.add(name, pass, "true: sessions live in PostgreSQL, shared by every instance and kept across restarts"+c.env.origin(name), "")
	case len(problems) == 0 && c.cfg.AllowMemoryStore:
		c.add(name, warn, "is not true and SESSION_ALLOW_MEMORY_STORE=true: one process only, and every restart signs everyone out",
			"set USE_POSTGRES=true and DATABASE_URL unless that is what you want")
	default:
		c.addProblems(name, problems)
	}
}

// checkDatabaseURL reports whether DATABASE_URL is worth connecting to.
func (c *checker) checkDatabaseURL() bool {
	const name = "DATABASE_URL"
	problems := c.take(name)
	switch {
	case len(problems) > 0:
		c.addProblems(name, problems)
		return false
	case c.cfg.DatabaseURL == "" && !c.cfg.UsePostgres && c.cfg.AllowMemoryStore:
		c.add(name, skip, "not set; not needed on the memory store", "")
		return false
	case c.cfg.DatabaseURL == "":
		c.add(name, fail, "is not set", "set it to postgres://user:password@host:5432/database")
		return false
	}
	pc, err := pgx.ParseConfig(c.cfg.DatabaseURL)
	if err != nil {
		c.add(name, fail, "is not a valid PostgreSQL connection string (value not shown: it may hold a password)",
			"use the form postgres://user:password@host:5432/database, percent-encoding special characters in the password")
		return false
	}
	where := redact.DatabaseURL(c.cfg.DatabaseURL) + c.env.origin(name)
	// PgBouncer listens on 6432 by default; in transaction pooling mode the
	// statements pgx prepares and caches per connection fail at random.
	if pc.Port == 6432 && pc.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement {
		c.add(name, warn, where+" looks like PgBouncer (port 6432)",
			"in transaction pooling mode add default_query_exec_mode=exec to DATABASE_URL")
		return true
	}
	c.add(name, pass, where, "")
	return true
}

// checkDatabase connects, times a round trip, reads the database's clock
// and inspects the session table, all without changing anything.
func (c *checker) checkDatabase(ctx context.Context, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	where := redact.DatabaseURL(c.cfg.DatabaseURL)
	pool, err := openPool(ctx, c.cfg.DatabaseURL, timeout)
	if err != nil {
		if ce, ok := errors.AsType[*connectError](err); ok {
			c.add("database reachable", fail, ce.problem, ce.fix)
		} else {
			c.add("database reachable", fail, redact.Message(err.Error()), "")
		}
		c.add("session table", skip, "needs the database", "")
		c.add("database clock", skip, "needs the database", "")
		return
	}
	defer pool.Close()
	// The connection is already open, so this times one round trip, which
	// is what every session load costs.
	start := time.Now()
	var dbNow time.Time
	err = pool.QueryRow(ctx, "SELECT now()").Scan(&dbNow)
	latency := time.Since(start)
	if err != nil {
		c.add("database reachable", fail, fmt.Sprintf("%s accepted a connection but did not answer a query: %s", where, redact.Message(err.Error())),
			"check the server's health and that the DATABASE_URL role may log in")
		c.add("session table", skip, "needs the database", "")
		c.add("database clock", skip, "needs the database", "")
		return
	}
	detail := fmt.Sprintf("%s answered in %s", where, latency.Round(100*time.Microsecond))
	if latency > maxLatency {
		c.add("database reachable", warn, detail, "every request that uses its session waits this long at least: put the database near the app")
	} else {
		c.add("database reachable", pass, detail, "")
	}
	c.checkTable(ctx, pool)
	c.checkExpress(ctx, pool)
	r := clockResult(dbNow, start.Add(latency/2))
	c.add(r.Check, r.Status, r.Detail, r.Fix)
}

// clockResult compares the database's clock, read at local time local, with
// this machine's. Sessions expire by the database's clock while the
// cookies the app sends expire by the app's, so skew ends sessions early
// or keeps dead cookies around.
func clockResult(dbNow, local time.Time) result {
	skew := dbNow.Sub(local)
	abs := skew.Abs()
	direction := "ahead of"
	if skew < 0 {
		direction = "behind"
	}
	r := result{Check: "database clock", Status: pass, Detail: fmt.Sprintf("within %s of this machine's (off by %s)", maxClockSkew, abs.Round(time.Millisecond))}
	if abs > maxClockSkew {
		r.Status = warn
		r.Detail = fmt.Sprintf("is %s %s this machine's", abs.Round(100*time.Millisecond), direction)
		r.Fix = "sync both clocks with NTP: sessions expire by the database's clock, cookies by the app's"
	}
	return r
}

func (c *checker) checkTable(ctx context.Context, pool *pgxpool.Pool) {
	const name = "session table"
	schema, err := checkSchema(ctx, pool, c.cfg.Table)
	if err != nil {
		c.add(name, fail, strings.TrimPrefix(redact.Message(err.Error()), "session: "), "fix SESSION_TABLE, or the database error above")
		return
	}
	if !schema.Exists {
		c.add(name, fail, schema.Table+" does not exist (every request would fail)", c.migrateFix(ctx, pool))
		return
	}
	if err := schema.Err(); err != nil {
		fix := ""
		if schema.Applied > 0 && schema.Applied < schema.Latest {
			fix = c.migrateFix(ctx, pool)
		}
		c.add(name, fail, strings.TrimPrefix(err.Error(), "session: "), fix)
		return
	}
	if schema.Applied == 0 {
		c.add(name, pass, fmt.Sprintf("%s has the expected columns (created without migration records)", schema.Table), "")
		return
	}
	c.add(name, pass, fmt.Sprintf("%s has the expected columns, migration %03d of %03d", schema.Table, schema.Applied, schema.Latest), "")
}

// migrateFix says how to create or upgrade the session table. The app can
// do it itself only when its role has the privileges migrating needs, so
// those are checked (has_schema_privilege, has_database_privilege, the
// table's owner) before auto-migration is suggested.
func (c *checker) migrateFix(ctx context.Context, pool *pgxpool.Pool) string {
	migrate := "run \"sessionctl migrate" + c.envFileFlag() + "\""
	table, err := migrations.ParseTable(c.cfg.Table)
	if err == nil {
		err = migrations.CheckPrivileges(ctx, pool, table)
	}
	switch {
	case err != nil:
		return redact.Message(err.Error())
	case c.cfg.ManualMigrations:
		return migrate + " (SESSION_AUTO_MIGRATE=false: the app does not migrate)"
	}
	return migrate + " (or let the app migrate: SESSION_AUTO_MIGRATE=true; its role may)"
}

// fingerprint identifies a secret without revealing it, so operators can
// tell whether two instances share one (a differing secret is the classic
// cause of unexpected logouts). It is shown only for secrets strong enough
// that 32 bits of a hash of them help no one guess them.
func fingerprint(secret string) string {
	sum := sha256.Sum256([]byte("sessionctl secret fingerprint\x00" + secret))
	return hex.EncodeToString(sum[:4])
}

// secretFix is how to get a good secret where this run reads it from.
func (c *checker) secretFix() string {
	if c.envFile != "" {
		return "run \"sessionctl secret --env-file " + c.envFile + "\""
	}
	return "run \"sessionctl secret\" and set SESSION_SECRET to what it prints"
}

func (c *checker) envFileFlag() string {
	if c.envFile == "" {
		return ""
	}
	return " --env-file " + c.envFile
}

func (c *checker) checkSecret() {
	const name = "SESSION_SECRET"
	problems := c.take(name)
	if len(problems) == 0 {
		c.add(name, pass, fmt.Sprintf("set, %d bytes, no guessable pattern, fingerprint %s%s", len(c.cfg.Secret), fingerprint(c.cfg.Secret), c.env.origin(name)), "")
		return
	}
	for _, p := range problems {
		c.add(name, fail, p.Problem+c.env.origin(name), c.secretFix())
	}
}

func (c *checker) checkPreviousSecrets() {
	const name = "previous secrets"
	problems := c.take("SESSION_SECRET_PREVIOUS")
	switch {
	case len(problems) > 0:
		c.addProblems(name, problems)
	case len(c.cfg.PreviousSecrets) == 0:
		c.add(name, pass, "SESSION_SECRET_PREVIOUS not set: no retired secret is accepted", "")
	case c.env.file != nil && c.stagedFirst():
		c.add(name, pass, fmt.Sprintf("%d secret(s), each as strong as production requires; the first is staged by \"sessionctl secret --stage\" (fingerprint %s), accepted but not yet signing",
			len(c.cfg.PreviousSecrets), fingerprint(c.cfg.PreviousSecrets[0])),
			"once every instance runs with "+c.envFile+": sessionctl secret --env-file "+c.envFile+" --promote")
	default:
		c.add(name, pass, fmt.Sprintf("%d retired secret(s), each as strong as production requires; cookies they signed are re-signed with SESSION_SECRET", len(c.cfg.PreviousSecrets)), "")
	}
}

// stagedFirst reports whether the first previous secret is the one
// "sessionctl secret --stage" noted in the env file.
func (c *checker) stagedFirst() bool {
	fp, ok := staged(c.env.file)
	return ok && fingerprint(c.cfg.PreviousSecrets[0]) == fp
}

// httpsTest is how an operator sees, from outside, whether the Secure
// cookie comes back: behind a proxy the app knows only what the proxy
// tells it about the browser's connection.
const httpsTest = "To test: curl -s -o /dev/null -D - https://your.site/PAGE | grep -i set-cookie, " +
	"PAGE being one that uses the session (a sign-in page), must show the cookie, and the site must answer on https:// only; " +
	"behind a TLS-terminating proxy, the proxy must be trusted and send X-Forwarded-Proto: https"

// checkCookie describes the cookie this configuration makes the app send.
func (c *checker) checkCookie() {
	const name = "cookie"
	problems := append(append(c.take("SESSION_COOKIE_NAME"), c.take("SESSION_COOKIE_DOMAIN")...), c.take("SESSION_SAMESITE")...)
	d := c.cfg
	domain := defaults.CookieDomain(d.CookieDomain)
	cookieName := defaults.CookieName(d.Production, d.CookieName, domain)
	attrs := []string{"name=" + cookieName}
	if d.Production {
		attrs = append(attrs, "Secure")
	}
	attrs = append(attrs, "HttpOnly", "SameSite="+sameSiteName(d.SameSite), "Path=/")
	if domain != "" {
		attrs = append(attrs, "Domain="+domain)
	}
	detail := strings.Join(attrs, " ")
	if prefix, _ := defaults.CookiePrefix(cookieName); d.Production && d.CookieName != cookieName {
		why := "no SESSION_COOKIE_DOMAIN: the cookie is this host's alone"
		if prefix == defaults.SecurePrefix {
			why = "SESSION_COOKIE_DOMAIN is set, where __Host- is not allowed"
		}
		given := "SESSION_COOKIE_NAME is not set"
		if d.CookieName != "" {
			given = fmt.Sprintf("SESSION_COOKIE_NAME=%s", d.CookieName)
		}
		detail += fmt.Sprintf(" (%s; production gives the name the %s prefix browsers enforce, as %s)", given, prefix, why)
	}
	switch {
	case len(problems) > 0:
		c.addProblems(name, problems)
	case !d.Production:
		c.add(name, fail, detail+": not Secure, so it would travel over plain HTTP",
			"set NODE_ENV=production, and serve the site over HTTPS: browsers send Secure cookies only there. "+httpsTest)
	case d.SameSite == http.SameSiteNoneMode:
		c.add(name, warn, detail+": sent on cross-site requests too",
			"use SESSION_SAMESITE=lax unless the app is embedded cross-site, and then protect every form against CSRF")
	default:
		c.add(name, pass, detail+" (the site must be served over HTTPS: browsers send a Secure cookie back only over HTTPS, "+
			"so over plain HTTP every page is a new session and users loop back to sign-in. "+httpsTest+")", "")
	}
}

// checkIdleTimeout warns when sessions never end for want of use: without
// an idle timeout a cookie left on a shared computer, or stolen, works for
// the whole SESSION_LIFETIME.
func (c *checker) checkIdleTimeout() {
	const name = "idle timeout"
	if c.cfg.IdleTimeout == 0 {
		c.add(name, warn, "SESSION_IDLE_TIMEOUT is not set: a session unused for days stays valid until SESSION_LIFETIME ends it",
			"set SESSION_IDLE_TIMEOUT, such as 30m for an app that handles money or health data, or 24h; an active user is never signed out by it")
		return
	}
	c.add(name, pass, fmt.Sprintf("SESSION_IDLE_TIMEOUT=%s: a session unused that long ends%s", c.cfg.IdleTimeout, c.env.origin("SESSION_IDLE_TIMEOUT")), "")
}

// checkSizeCap warns when SESSION_MAX_SIZE=0 turns the size cap off: a
// session is read on every request that uses it, so one large value makes
// every one of them slow.
func (c *checker) checkSizeCap() {
	const name = "size cap"
	switch {
	case c.cfg.MaxSize < 0:
		c.add(name, warn, "SESSION_MAX_SIZE=0: no cap, so one large value would be loaded and sent to the database on every request"+c.env.origin("SESSION_MAX_SIZE"),
			"unset SESSION_MAX_SIZE for the 64 KiB default, or set the largest session in bytes")
	case c.cfg.MaxSize == 0:
		c.add(name, pass, fmt.Sprintf("%d bytes (the default): a change that would make a session larger is refused", logged(c.cfg, "max_size").Int64()), "")
	default:
		c.add(name, pass, fmt.Sprintf("%d bytes: a change that would make a session larger is refused%s", c.cfg.MaxSize, c.env.origin("SESSION_MAX_SIZE")), "")
	}
}

func sameSiteName(s http.SameSite) string {
	switch s {
	case http.SameSiteStrictMode:
		return "Strict"
	case http.SameSiteNoneMode:
		return "None"
	default:
		return "Lax"
	}
}
