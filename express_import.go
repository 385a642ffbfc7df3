package session

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/smartscheduler/session/migrations"
)

// This file takes express-session's users over as they arrive, the
// request side of the move that docs/migrating-from-express.md describes:
// the configuration (Config.Express*), the connect.sid cookie, and setting
// up the importer New gives the request path. store_postgres_express.go
// moves the sessions themselves.

// defaultExpressCookieName is express-session's default cookie name.
const defaultExpressCookieName = "connect.sid"

// readExpress reads the SESSION_EXPRESS_* variables into c.
func (c *Config) readExpress(get func(string) string) {
	c.ExpressTable = get("SESSION_EXPRESS_TABLE")
	c.ExpressCookieName = get("SESSION_EXPRESS_COOKIE")
	c.ExpressSecrets = secretList(get("SESSION_EXPRESS_SECRET"))
	c.ExpressCookieDomain = get("SESSION_EXPRESS_COOKIE_DOMAIN")
	c.ExpressTimeZone = get("SESSION_EXPRESS_TIMEZONE")
}

// expressDefaults fills the import's defaults when it is configured, and
// leaves an unconfigured Config as it was.
func (c *Config) expressDefaults() {
	if c.ExpressTable != "" && c.ExpressCookieName == "" {
		c.ExpressCookieName = defaultExpressCookieName
	}
}

// validateExpress reports the import's configuration problems through bad;
// d is c with its defaults. What needs the database (does the table exist,
// is the zone known) New checks when it connects.
func (c Config) validateExpress(d Config, ownStore bool, bad func(variable, problem, fix string)) {
	if c.ExpressTable == "" {
		for _, v := range []struct{ variable, value string }{
			{"SESSION_EXPRESS_COOKIE", c.ExpressCookieName},
			{"SESSION_EXPRESS_COOKIE_DOMAIN", c.ExpressCookieDomain},
			{"SESSION_EXPRESS_TIMEZONE", c.ExpressTimeZone},
		} {
			if v.value != "" {
				bad(v.variable, "is set but SESSION_EXPRESS_TABLE is not, so nothing is imported", "set SESSION_EXPRESS_TABLE to connect-pg-simple's table, or unset "+v.variable)
			}
		}
		if len(c.ExpressSecrets) > 0 {
			bad("SESSION_EXPRESS_SECRET", "is set but SESSION_EXPRESS_TABLE is not, so it verifies nothing", "set SESSION_EXPRESS_TABLE to connect-pg-simple's table, or unset SESSION_EXPRESS_SECRET once the move is done")
		}
		return
	}
	for i, s := range c.ExpressSecrets {
		if s == "" {
			bad("SESSION_EXPRESS_SECRET", fmt.Sprintf("entry %d is empty", i+1), "list the Node app's secrets separated by single commas")
		}
	}
	if err := validateTableName(c.ExpressTable); err != nil {
		bad("SESSION_EXPRESS_TABLE", err.Error(), `use connect-pg-simple's table name, "session" unless the Node app chose another, as "table" or "schema.table"`)
	} else if c.ExpressTable == d.Table {
		bad("SESSION_TABLE", fmt.Sprintf("names %q, the table SESSION_EXPRESS_TABLE imports from; this library needs a table of its own", d.Table),
			"set SESSION_TABLE to a free name, such as go_session")
	}
	if err := (&http.Cookie{Name: d.ExpressCookieName, Value: "x"}).Valid(); err != nil {
		bad("SESSION_EXPRESS_COOKIE", fmt.Sprintf("is %q, not a valid cookie name", d.ExpressCookieName), "set it to express-session's name option, connect.sid unless the Node app chose another")
	} else if d.ExpressCookieName == d.CookieName {
		// One response sets the new cookie and clears express's: under one
		// name the browser would keep whichever came last.
		bad("SESSION_COOKIE_NAME", fmt.Sprintf("is %q, express-session's cookie name too; the library's cookie needs a name of its own while sessions move over", d.CookieName),
			"unset SESSION_COOKIE_NAME, or choose another name")
	}
	if d.TokenSource == "header" {
		bad("SESSION_TOKEN_SOURCE", "is header, but SESSION_EXPRESS_TABLE moves browsers' express-session cookies to a cookie of this library's, which header mode never sets",
			"set SESSION_TOKEN_SOURCE=both while sessions move, or cookie")
	}
	if !c.UsePostgres && !ownStore {
		bad("SESSION_EXPRESS_TABLE", "is set but USE_POSTGRES is not true; the sessions to import are in PostgreSQL, and go into this library's PostgreSQL table",
			"set USE_POSTGRES=true and DATABASE_URL to the Node app's database")
	}
}

// expressCookie is the request side of the import: it finds the session id
// in a request's connect.sid, and clears that cookie once its session has
// moved, or is gone.
type expressCookie struct {
	name string
	// secrets verify connect.sid: the Node app signed with the same
	// SESSION_SECRET, so Secret and PreviousSecrets, newest first, then
	// ExpressSecrets, which verify nothing else.
	secrets []string
	// domain is Config.ExpressCookieDomain; secure is production's.
	domain string
	secure bool
}

// sid returns the session id of the first of the request's express cookies
// (at most maxCookiesTried) that one of the secrets signed, or "". It makes
// no store call: a cookie that does not verify costs its HMACs only.
func (c *expressCookie) sid(r *http.Request) string {
	for i, ck := range r.CookiesNamed(c.name) {
		if i == maxCookiesTried {
			break
		}
		if sid, ok := verifyExpressCookie(ck.Value, c.secrets); ok {
			return sid
		}
	}
	return ""
}

// legacyCookie is where another system set the cookie the request
// presented, as far as the import learnt it: clearing that cookie takes the
// same Path and Domain, or the browser keeps it. Empty fields mean unknown.
type legacyCookie struct {
	path, domain string
}

// expired returns the Set-Cookie that clears the express cookie set at at:
// the session's own Path and Domain when the import read them, otherwise
// express-session's default Path and the configured Domain.
func (c *expressCookie) expired(at legacyCookie) *http.Cookie {
	ck := &http.Cookie{
		Name:     c.name,
		Path:     "/",
		Domain:   c.domain,
		Secure:   c.secure,
		HttpOnly: true,
		Expires:  time.Unix(1, 0),
		MaxAge:   -1,
	}
	if at.path != "" {
		ck.Path = at.path
	}
	if at.domain != "" {
		ck.Domain = at.domain
	}
	return ck
}

// setUpExpressImport gives m the importer and the cookie reader when
// Config.ExpressTable is set. The import writes straight into the
// PostgreSQL table, in the transaction that takes the session out of
// connect-pg-simple's, so it needs the store to be NewPostgresStore's
// itself (New's, or one given with WithStore), not a wrapper around it.
func (m *Manager) setUpExpressImport(ctx context.Context) error {
	if m.cfg.ExpressTable == "" {
		return nil
	}
	pg, ok := m.store.(*postgresStore)
	if !ok {
		return fmt.Errorf("session: SESSION_EXPRESS_TABLE is set, but sessions are not stored in PostgreSQL (the store is %T): the import moves sessions between two PostgreSQL tables; set USE_POSTGRES=true, or pass the store NewPostgresStore returned to WithStore itself, not a wrapper", m.store)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	mode := ledgerCreate
	if m.cfg.ManualMigrations {
		mode = ledgerRequire
	}
	im, err := newExpressImporter(ctx, pg, expressSettings{
		legacy:      m.cfg.ExpressTable,
		zone:        m.cfg.ExpressTimeZone,
		lifetime:    m.cfg.Lifetime,
		idleTimeout: m.cfg.IdleTimeout,
	}, mode, m.logger)
	if err != nil {
		return err
	}
	m.importer = im
	m.expressCookie = &expressCookie{
		name:    m.cfg.ExpressCookieName,
		secrets: slices.Concat([]string{m.cfg.Secret}, m.cfg.PreviousSecrets, m.cfg.ExpressSecrets),
		domain:  m.cfg.ExpressCookieDomain,
		secure:  m.cfg.Production,
	}
	return nil
}

// expressSettings is where the import reads and writes: what New takes
// from Config, and sessionctl from the same variables.
type expressSettings struct {
	// legacy is connect-pg-simple's table as configured.
	legacy string
	// zone is the Node connection's TimeZone, or "" for this connection's.
	zone string
	// lifetime caps an imported session's deadline, from the import on;
	// idleTimeout, when set, starts its idle window.
	lifetime, idleTimeout time.Duration
}

// resolveExpressTable parses and resolves the legacy table and checks that
// it is connect-pg-simple's and not the store's own.
func resolveExpressTable(ctx context.Context, db migrations.DB, name string, own migrations.Table) (migrations.Table, error) {
	t, err := migrations.ParseTable(name)
	if err != nil {
		return t, fmt.Errorf("session: SESSION_EXPRESS_TABLE: %w", err)
	}
	t, err = t.Resolve(ctx, db)
	var sc migrations.Schema
	if err == nil {
		sc, err = migrations.Check(ctx, db, t)
	}
	switch {
	case err != nil:
		return t, fmt.Errorf("session: SESSION_EXPRESS_TABLE: %w", classify(ctx, err))
	case t == own:
		return t, fmt.Errorf("session: SESSION_EXPRESS_TABLE and SESSION_TABLE both name %s; this library needs a table of its own: set SESSION_TABLE to a free name, such as go_session", t)
	case !sc.Exists:
		return t, fmt.Errorf("session: SESSION_EXPRESS_TABLE names %s, which does not exist: set it to connect-pg-simple's table (\"session\" unless the Node app chose another), or unset it once every session has moved (sessionctl stats shows how many remain)", t)
	case !sc.Express:
		return t, fmt.Errorf("session: SESSION_EXPRESS_TABLE names %s, which is not connect-pg-simple's table (it has the columns %s, not sid, sess and expire): set it to the table the Node app's session store used", t, strings.Join(sc.Columns, ", "))
	}
	return t, nil
}
