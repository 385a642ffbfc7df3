package session

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/net/publicsuffix"

	"github.com/smartscheduler/session/internal/defaults"
	"github.com/smartscheduler/session/internal/entropy"
	"github.com/smartscheduler/session/internal/redact"
	"github.com/smartscheduler/session/internal/redisurl"
)

// minSecretLength is the shortest SESSION_SECRET production accepts, in bytes.
const minSecretLength = 32

// Config is everything a Manager needs. ConfigFromEnv fills it from the
// environment; it is equally usable built in code. The zero value of every
// field means its documented default, so Config{} is a working development
// configuration.
//
// No way of printing a Config shows a secret or the database password:
// fmt's %v, %+v, %#v, %s and %q print String, slog prints LogValue, and
// encoding/json skips the three fields that hold them. (Struct tags rather
// than a MarshalJSON method: every other field marshals as it is, with no
// hand-kept list to fall out of step with the struct.)
type Config struct {
	// Production switches on production mode: cookies are Secure, their
	// name carries the __Host- or __Secure- prefix, and Validate refuses
	// weak secrets and the memory store. The default is false.
	//
	// ConfigFromEnv turns it on unless NODE_ENV (or, when NODE_ENV is
	// unset, APP_ENV) names development: a typo such as "prod" or an
	// invisible character must not switch the checks off (see
	// developmentEnvironments).
	Production bool

	// mode records how ConfigFromLookup chose Production, for LogValue.
	mode environmentMode

	// UsePostgres selects the PostgreSQL store (USE_POSTGRES=true). The
	// default is false: the in-memory store.
	UsePostgres bool

	// DatabaseURL is the PostgreSQL connection string (DATABASE_URL), used
	// when UsePostgres is true. Like the secrets, it is left out of JSON: it
	// holds the database password.
	DatabaseURL string `json:"-"`

	// Secret signs session cookies (SESSION_SECRET). Production requires at
	// least minSecretLength bytes. In development an empty Secret is replaced
	// by a random one that lives as long as the process. encoding/json
	// leaves it out, so that marshaling a Config for a debug endpoint or a
	// config dump cannot publish it.
	Secret string `json:"-"`

	// PreviousSecrets are retired secrets (SESSION_SECRET_PREVIOUS,
	// comma-separated) whose cookies are still accepted and re-issued signed
	// with Secret, so rotating the secret logs nobody out. The default is
	// none. Left out of JSON, as Secret is.
	PreviousSecrets []string `json:"-"`

	// AllowMemoryStore lets production run on the in-memory store
	// (SESSION_ALLOW_MEMORY_STORE=true), accepting a single process whose
	// sessions are lost on restart. The default is false.
	AllowMemoryStore bool

	// CookieName is the session cookie's name (SESSION_COOKIE_NAME). The
	// default is "session". In production the name always carries a prefix
	// browsers enforce, added when it has none: __Host- without a
	// CookieDomain (the cookie is then the host's alone, Secure, Path=/),
	// __Secure- with one. A name given with a prefix is matched in any case,
	// as browsers match it; __Host- with a CookieDomain is an error, since
	// browsers would reject the cookie.
	CookieName string

	// CookieDomain is the cookie's Domain attribute (SESSION_COOKIE_DOMAIN),
	// a host name that the app's hosts share, such as "example.com" for
	// www.example.com and app.example.com. An IP address, a port, an empty
	// label or a public suffix ("com", "co.uk", "github.io": no browser sets
	// a cookie for all of it) is an error; one leading dot is ignored, as
	// browsers ignore it. The default is empty: the cookie is sent only to
	// the host that set it.
	CookieDomain string

	// SameSite is the cookie's SameSite attribute (SESSION_SAMESITE: lax,
	// strict or none). The default is http.SameSiteLaxMode.
	SameSite http.SameSite

	// Lifetime is the absolute lifetime of a session, however active
	// (SESSION_LIFETIME, a Go duration such as "720h"). The default is 14
	// days.
	Lifetime time.Duration

	// IdleTimeout ends a session that has not been used for this long
	// (SESSION_IDLE_TIMEOUT). The default is 0: no idle timeout.
	IdleTimeout time.Duration

	// TouchInterval is how much of the idle window must pass before a read
	// slides the idle expiry forward (SESSION_TOUCH_INTERVAL). Sliding costs
	// a small UPDATE, so it is done at most once per interval. The default is
	// a tenth of IdleTimeout.
	TouchInterval time.Duration

	// Table is the PostgreSQL table, optionally schema-qualified
	// (SESSION_TABLE). The default is "session".
	Table string

	// ManualMigrations stops New from creating or upgrading the table
	// (SESSION_AUTO_MIGRATE=false), for teams that run `sessionctl migrate`
	// as a deploy step. The default is false: New migrates.
	ManualMigrations bool

	// MaxSize caps a session's encoded values, in bytes (SESSION_MAX_SIZE).
	// Set and the store refuse a change that would take the session over
	// it, with ErrTooLarge. The zero value means the default, 64 KiB; a
	// negative value turns the cap off (SESSION_MAX_SIZE=0). A session is
	// read on every request that uses it, so the cap keeps one careless Set
	// from making every later request slow: 64 KiB is sixteen times what a
	// cookie can hold, room for carts, flashes and form state, while data
	// larger than that belongs in a table of its own, keyed from the
	// session.
	MaxSize int

	// StoreTimeout bounds every store call and the start-up connection check
	// (SESSION_STORE_TIMEOUT). The default is 5 seconds.
	StoreTimeout time.Duration

	// PruneInterval is how often expired sessions are deleted
	// (SESSION_PRUNE_INTERVAL), with jitter so instances spread out. The
	// default is 5 minutes.
	PruneInterval time.Duration

	// TrustedProxies are the addresses of the reverse proxies in front of
	// the app (SESSION_TRUSTED_PROXIES, comma-separated IPs or CIDRs such
	// as 10.0.0.0/8). Only a request from one of them is believed about
	// the client's address (X-Forwarded-For, Forwarded) and about HTTPS
	// (X-Forwarded-Proto). The default is none: the peer address is the
	// client's, and only TLS to this server is HTTPS.
	TrustedProxies []netip.Prefix

	// MaxPerUser caps how many sessions one user may have at once
	// (SESSION_MAX_PER_USER): a sign-in that would exceed it ends the
	// user's least recently seen sessions. The default is 0: no cap.
	MaxPerUser int

	// TokenSource is where requests carry their session's token
	// (SESSION_TOKEN_SOURCE): "cookie", the default, for browsers; "header",
	// for API, mobile and command-line clients, in TokenHeader, never a
	// cookie; or "both", where a request's header wins over its cookie and
	// the response answers in the channel the request used (both for a
	// new session). A header is never read from the query string.
	TokenSource string

	// TokenHeader is the header that carries the token when TokenSource is
	// "header" or "both" (SESSION_TOKEN_HEADER). "Authorization", the
	// default, uses the Bearer scheme (Authorization: Bearer <token>); any
	// other name, such as X-Session-Token, carries the token as its value.
	// A response carries the new token in the same header when one is
	// issued or renewed, an empty one when the session ended, and nothing
	// when nothing changed.
	TokenHeader string

	// MaxLifetime is the longest lifetime Session.SetLifetime may give a
	// session, absolute or idle (SESSION_MAX_LIFETIME): "remember me for 90
	// days" needs it raised on purpose. The default is Lifetime.
	MaxLifetime time.Duration

	// Moving from express-session and connect-pg-simple without signing
	// anyone out (express_import.go, docs/migrating-from-express.md). All
	// unset: nothing of it runs.

	// ExpressTable is connect-pg-simple's session table, "table" or
	// "schema.table" (SESSION_EXPRESS_TABLE). When set, a request without
	// a session cookie of this library but with express-session's cookie,
	// signed with Secret, PreviousSecrets or ExpressSecrets, takes its
	// session over from that table, and the bulk import (sessionctl express
	// import) moves the rest. It needs the PostgreSQL store, and a Table of
	// its own. The default is empty: no import.
	ExpressTable string

	// ExpressCookieName is express-session's cookie name
	// (SESSION_EXPRESS_COOKIE). The default is "connect.sid".
	ExpressCookieName string

	// ExpressSecrets are the Node app's secrets that production refuses
	// as Secret or PreviousSecrets (SESSION_EXPRESS_SECRET,
	// comma-separated): too short, a placeholder or predictable, as
	// express-session's examples ("keyboard cat") and many apps have them.
	// They verify express-session's cookie and nothing else, never this
	// library's cookies, so a weak Node secret stays where it was, for the
	// move only (a connect.sid is worth a session only with that session's
	// id, which the Node table holds). Remove them with ExpressTable once
	// the move is done. The default is none: express-session's cookie
	// verifies with Secret and PreviousSecrets. Left out of JSON.
	ExpressSecrets []string `json:"-"`

	// ExpressCookieDomain is the Domain attribute the Node app set its
	// cookie with, if it set one (SESSION_EXPRESS_COOKIE_DOMAIN): clearing
	// the cookie takes the same Domain, or the browser keeps it. A session
	// read from the Node table brings the domain express recorded in it;
	// this is for the cookies of sessions the bulk import moved, or that
	// are gone. The default is empty: no Domain.
	ExpressCookieDomain string

	// ExpressTimeZone is the PostgreSQL TimeZone of the Node app's database
	// connection (SESSION_EXPRESS_TIMEZONE), such as "Etc/UTC":
	// connect-pg-simple's expire column is wall-clock time in that zone.
	// The default is the TimeZone of this library's own connection, which
	// is the Node app's when both connect as the same role to the same
	// database and neither PGTZ nor an options= parameter sets a zone for
	// this one (node-postgres reads neither); sessionctl check shows both.
	ExpressTimeZone string

	// UseRedis selects the Redis store (USE_REDIS=true), shared by every
	// instance like PostgreSQL; it excludes UsePostgres. The default is
	// false.
	UseRedis bool

	// RedisURL is the Redis server or cluster (REDIS_URL), used when
	// UseRedis is true: redis://user:password@host:6379/0, rediss:// for
	// TLS, and for a cluster redis://host1:7000?addr=host2:7000&addr=... or
	// cluster=true. The default is none.
	RedisURL string

	// RedisCluster makes RedisURL a Redis Cluster even when it names one
	// node without cluster=true (REDIS_CLUSTER=true). The default is false.
	RedisCluster bool
}

// Defaults for Config fields left at their zero value; each field's
// comment states its own.
const (
	defaultLifetime      = 14 * 24 * time.Hour
	defaultMaxSize       = 64 << 10
	defaultStoreTimeout  = 5 * time.Second
	defaultPruneInterval = 5 * time.Minute
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.CookieDomain = defaults.CookieDomain(c.CookieDomain)
	c.CookieName = defaults.CookieName(c.Production, c.CookieName, c.CookieDomain)
	if c.SameSite == 0 {
		c.SameSite = http.SameSiteLaxMode
	}
	if c.Lifetime == 0 {
		c.Lifetime = defaultLifetime
	}
	if c.TouchInterval == 0 {
		c.TouchInterval = c.IdleTimeout / 10
	}
	// The effective cap, which the Manager hands the store: > 0, or 0 for
	// none.
	switch {
	case c.MaxSize == 0:
		c.MaxSize = defaultMaxSize
	case c.MaxSize < 0:
		c.MaxSize = 0
	}
	if c.Table == "" {
		c.Table = defaults.Table
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = defaultStoreTimeout
	}
	if c.PruneInterval == 0 {
		c.PruneInterval = defaultPruneInterval
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = c.Lifetime
	}
	if c.TokenSource == "" {
		c.TokenSource = "cookie"
	}
	if c.TokenHeader == "" {
		c.TokenHeader = "Authorization"
	}
	c.expressDefaults()
	return c
}

// ConfigError is one problem with the configuration: which variable, what is
// wrong, and how to fix it. Validate, ConfigFromEnv and New return every
// ConfigError at once, joined with errors.Join; the joined error's
// Unwrap() []error lists them.
type ConfigError struct {
	Variable string
	Problem  string
	Fix      string
}

func (e *ConfigError) Error() string {
	if e.Fix == "" {
		return e.Variable + " " + e.Problem
	}
	return e.Variable + " " + e.Problem + ": " + e.Fix
}

// ConfigFromEnv reads the configuration from the process environment and
// validates it. The error, if any, lists every problem found.
func ConfigFromEnv() (Config, error) {
	return ConfigFromLookup(os.LookupEnv)
}

// ConfigFromLookup is ConfigFromEnv reading variables through lookup, for
// tests and for tools that read an env file.
func ConfigFromLookup(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	var c Config
	var problems []error
	bad := func(variable, problem, fix string) {
		problems = append(problems, &ConfigError{Variable: variable, Problem: problem, Fix: fix})
	}
	parseBool := func(name string, dst *bool) {
		v := get(name)
		if v == "" {
			return
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(name, fmt.Sprintf("is %q, not a boolean", v), "set it to true or false")
			return
		}
		*dst = b
	}
	parseDuration := func(name string, dst *time.Duration) {
		v := get(name)
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad(name, fmt.Sprintf("is %q, not a positive duration", v), `write it as a Go duration such as "30m" or "720h"`)
			return
		}
		*dst = d
	}

	c.mode = environmentModeOf(lookup)
	c.Production = c.mode.production
	if c.mode.conflict != "" {
		bad("NODE_ENV", c.mode.conflict, "set both to the same mode, or unset APP_ENV; production checks run until they agree")
	}
	parseBool("USE_POSTGRES", &c.UsePostgres)
	c.DatabaseURL = get("DATABASE_URL")
	c.Secret = get("SESSION_SECRET")
	c.PreviousSecrets = secretList(get("SESSION_SECRET_PREVIOUS"))
	parseBool("SESSION_ALLOW_MEMORY_STORE", &c.AllowMemoryStore)
	c.CookieName = get("SESSION_COOKIE_NAME")
	c.CookieDomain = get("SESSION_COOKIE_DOMAIN")
	if v := get("SESSION_SAMESITE"); v != "" {
		switch strings.ToLower(v) {
		case "lax":
			c.SameSite = http.SameSiteLaxMode
		case "strict":
			c.SameSite = http.SameSiteStrictMode
		case "none":
			c.SameSite = http.SameSiteNoneMode
		default:
			bad("SESSION_SAMESITE", fmt.Sprintf("is %q", v), "set it to lax, strict or none")
		}
	}
	parseDuration("SESSION_LIFETIME", &c.Lifetime)
	parseDuration("SESSION_IDLE_TIMEOUT", &c.IdleTimeout)
	parseDuration("SESSION_TOUCH_INTERVAL", &c.TouchInterval)
	parseDuration("SESSION_STORE_TIMEOUT", &c.StoreTimeout)
	parseDuration("SESSION_PRUNE_INTERVAL", &c.PruneInterval)
	c.Table = get("SESSION_TABLE")
	autoMigrate := true
	parseBool("SESSION_AUTO_MIGRATE", &autoMigrate)
	c.ManualMigrations = !autoMigrate
	parseBool("USE_REDIS", &c.UseRedis)
	c.RedisURL = get("REDIS_URL")
	parseBool("REDIS_CLUSTER", &c.RedisCluster)
	if v := get("SESSION_MAX_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 0:
			bad("SESSION_MAX_SIZE", fmt.Sprintf("is %q, not a size in bytes", v), "set it to a whole number of bytes, 0 for no cap, or leave it unset for the 64 KiB default")
		case n == 0:
			c.MaxSize = -1 // off: the zero MaxSize means the default
		default:
			c.MaxSize = n
		}
	}
	parseDuration("SESSION_MAX_LIFETIME", &c.MaxLifetime)
	c.TokenSource = strings.ToLower(get("SESSION_TOKEN_SOURCE"))
	c.TokenHeader = get("SESSION_TOKEN_HEADER")
	if v := get("SESSION_MAX_PER_USER"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad("SESSION_MAX_PER_USER", fmt.Sprintf("is %q, not a number of sessions", v), "set it to how many sessions one user may have at once, or leave it unset for no cap")
		} else {
			c.MaxPerUser = n
		}
	}
	if v := get("SESSION_TRUSTED_PROXIES"); v != "" {
		for entry := range strings.SplitSeq(v, ",") {
			prefix, err := parsePrefix(strings.TrimSpace(entry))
			if err != nil {
				bad("SESSION_TRUSTED_PROXIES", fmt.Sprintf("has %q, not an IP address or CIDR", strings.TrimSpace(entry)), "list the proxies' addresses separated by commas, such as 10.0.0.5,10.1.0.0/16")
				continue
			}
			c.TrustedProxies = append(c.TrustedProxies, prefix)
		}
	}
	c.readExpress(get)
	if err := c.Validate(); err != nil {
		problems = append(problems, err.(interface{ Unwrap() []error }).Unwrap()...)
	}
	return c, errors.Join(problems...)
}

// secretList reads a comma-separated list of secrets, trimmed; empty
// entries stay, for Validate to name.
func secretList(v string) []string {
	var list []string
	if v != "" {
		for s := range strings.SplitSeq(v, ",") {
			list = append(list, strings.TrimSpace(s))
		}
	}
	return list
}

// validHeaderName reports whether name is an HTTP header field name (a
// token, RFC 9110), and not one a session must not take over.
func validHeaderName(name string) bool {
	switch strings.ToLower(name) {
	case "cookie", "set-cookie", "host", "content-length", "transfer-encoding":
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
		if !ok {
			return false
		}
	}
	return name != ""
}

// parsePrefix reads an IP address, as a one-address prefix, or a CIDR.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()), nil
}

// clientIP is the address of the client that sent r: the peer, or when the
// peer is one of TrustedProxies, the nearest address the proxies report
// that is not one of them (X-Forwarded-For, else Forwarded's for=). It is
// what a "your devices" page shows, so it never trusts what an untrusted
// client says.
func (c *Config) clientIP(r *http.Request) string {
	peer, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		peer = r.RemoteAddr
	}
	if !c.trusted(r.RemoteAddr) {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for hop := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	if len(hops) == 0 {
		for _, v := range r.Header.Values("Forwarded") {
			for element := range strings.SplitSeq(v, ",") {
				for pair := range strings.SplitSeq(element, ";") {
					if k, val, ok := strings.Cut(strings.TrimSpace(pair), "="); ok && strings.EqualFold(k, "for") {
						val = strings.Trim(val, `"`)
						if host, _, err := net.SplitHostPort(val); err == nil {
							val = host
						}
						hops = append(hops, strings.Trim(val, "[]"))
					}
				}
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		addr, err := netip.ParseAddr(hops[i])
		if err != nil {
			return peer // a hop we cannot read: trust nothing beyond it
		}
		if !c.trusted(net.JoinHostPort(addr.String(), "0")) {
			return addr.Unmap().String()
		}
	}
	return peer
}

// trusted reports whether remoteAddr (as http.Request.RemoteAddr has it)
// is one of TrustedProxies.
func (c *Config) trusted(remoteAddr string) bool {
	if len(c.TrustedProxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range c.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// developmentEnvironments are the NODE_ENV and APP_ENV values that turn
// production mode off; unset and empty do too. Anything else, "staging",
// "prod" and "production;" included, runs production checks: a typo must
// fail closed.
var developmentEnvironments = []string{"development", "dev", "test", "local"}

// environmentMode is how ConfigFromLookup chose production mode.
type environmentMode struct {
	production bool
	// reason says which variable and value decided, for the start-up log:
	// `NODE_ENV="prod" is not development, dev, test or local`.
	reason string
	// conflict is the problem when NODE_ENV and APP_ENV disagree.
	conflict string
}

// isDevelopment reports whether value, of NODE_ENV or APP_ENV, names
// development. Only ASCII spaces and tabs around it are trimmed and only
// ASCII letters fold, so a zero-width or non-breaking space, or a letter
// that merely folds to an ASCII one, makes the value something else.
func isDevelopment(value string) bool {
	v := strings.Trim(value, " \t\r\n")
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return false
		}
	}
	return v == "" || slices.Contains(developmentEnvironments, strings.ToLower(v))
}

// environmentModeOf decides production mode from NODE_ENV and APP_ENV.
func environmentModeOf(lookup func(string) (string, bool)) environmentMode {
	// quoted shows a value with invisible characters escaped, cut short:
	// it is only there to be recognised.
	quoted := func(v string) string {
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	}
	node, _ := lookup("NODE_ENV")
	app, _ := lookup("APP_ENV")
	nodeSet, appSet := strings.Trim(node, " \t\r\n") != "", strings.Trim(app, " \t\r\n") != ""
	if nodeSet && appSet && isDevelopment(node) != isDevelopment(app) {
		return environmentMode{
			production: true,
			reason:     fmt.Sprintf("NODE_ENV=%s and APP_ENV=%s disagree", quoted(node), quoted(app)),
			conflict:   fmt.Sprintf("is %s but APP_ENV is %s: one says production, the other development", quoted(node), quoted(app)),
		}
	}
	name, value := "NODE_ENV", node
	if !nodeSet {
		name, value = "APP_ENV", app
	}
	switch {
	case !nodeSet && !appSet:
		return environmentMode{reason: "NODE_ENV and APP_ENV are not set"}
	case isDevelopment(value):
		return environmentMode{reason: name + "=" + quoted(value)}
	case strings.EqualFold(strings.Trim(value, " \t\r\n"), "production"):
		return environmentMode{production: true, reason: name + "=" + quoted(value)}
	}
	return environmentMode{production: true, reason: fmt.Sprintf("%s=%s is not %s or %s", name, quoted(value),
		strings.Join(developmentEnvironments[:len(developmentEnvironments)-1], ", "), developmentEnvironments[len(developmentEnvironments)-1])}
}

// modeText is the mode and why, for LogValue: "production (NODE_ENV=...)".
func (c Config) modeText() string {
	mode := "development"
	if c.Production {
		mode = "production"
	}
	if c.mode.reason == "" || c.mode.production != c.Production {
		return mode + " (Config.Production set in code)"
	}
	return mode + " (" + c.mode.reason + ")"
}

// placeholderSecrets are values copied from documentation and tutorials.
var placeholderSecrets = map[string]bool{
	"<random-secure-string>": true, "changeme": true, "change-me": true, "change_me": true,
	"secret": true, "keyboard cat": true, "password": true, "session_secret": true,
	"session-secret": true, "your-secret": true, "your-secret-here": true, "mysecret": true,
	"supersecret": true, "development": true, "test": true, "default": true,
}

// minSecretBits is the entropy production requires of every accepted
// secret, by internal/entropy's estimate: the strength of a 128-bit key,
// which 32 random bytes written in base64 or hex clear twice over, and
// which a secret made of repeated, sequential or keyboard patterns or
// common words does not come near however long it is.
const minSecretBits = 128

// secretWeakness returns why s is unusable as a production secret, or "".
// It is the one judgement of a secret: SESSION_SECRET and every entry of
// SESSION_SECRET_PREVIOUS, which signs nothing but is accepted as if it
// did, meet the same bar.
func secretWeakness(s string) string {
	lower := strings.ToLower(strings.TrimSpace(s))
	switch {
	case placeholderSecrets[lower] || (strings.HasPrefix(lower, "<") && strings.HasSuffix(lower, ">")):
		return "is a placeholder copied from documentation"
	case len(s) < minSecretLength:
		return fmt.Sprintf("is %d bytes; production needs at least %d", len(s), minSecretLength)
	}
	e := entropy.Of(s)
	if e.Bits >= minSecretBits {
		return ""
	}
	made := "too few kinds of character for its length"
	if len(e.Patterns) > 0 {
		made = "made of " + strings.Join(e.Patterns, " and ")
	}
	return fmt.Sprintf("is predictable: about %.0f bits by an estimate that tries common patterns first (%s); production needs %d", e.Bits, made, minSecretBits)
}

// Validate reports every problem with c at once (joined ConfigErrors), each
// naming the variable and the fix. Zero fields are judged by their defaults,
// and the store by the one c selects (New skips those checks for a store
// given with WithStore).
func (c Config) Validate() error {
	return c.validate(false)
}

// validate is Validate, judging the store settings only when c selects the
// store (ownStore false).
func (c Config) validate(ownStore bool) error {
	var problems []error
	bad := func(variable, problem, fix string) {
		problems = append(problems, &ConfigError{Variable: variable, Problem: problem, Fix: fix})
	}
	const secretFix = "run `sessionctl secret` and set SESSION_SECRET to what it prints"
	if c.Production {
		if c.Secret == "" {
			bad("SESSION_SECRET", "is not set; production refuses to sign cookies with a throwaway secret", secretFix)
		} else if why := secretWeakness(c.Secret); why != "" {
			fix := secretFix
			if c.ExpressTable != "" {
				fix += "; if it is the Node app's secret, move it to SESSION_EXPRESS_SECRET, where it verifies express-session's cookie only"
			}
			bad("SESSION_SECRET", why, fix)
		}
		if !c.UsePostgres && !c.UseRedis && !c.AllowMemoryStore && !ownStore {
			bad("USE_POSTGRES", "is not true; the memory store loses every session on restart and cannot be shared by instances",
				"set USE_POSTGRES=true and DATABASE_URL, or SESSION_ALLOW_MEMORY_STORE=true to accept a single process")
		}
	}
	for i, s := range c.PreviousSecrets {
		switch {
		case strings.TrimSpace(s) == "":
			bad("SESSION_SECRET_PREVIOUS", fmt.Sprintf("entry %d is empty", i+1), "list old secrets separated by single commas")
		case s == c.Secret:
			bad("SESSION_SECRET_PREVIOUS", fmt.Sprintf("entry %d equals SESSION_SECRET", i+1), "remove it; the current secret is always accepted")
		case c.Production:
			if why := secretWeakness(s); why != "" {
				fix := "remove it: a cookie signed with it is accepted as if signed with SESSION_SECRET, so it must be as strong"
				if c.ExpressTable != "" {
					fix += "; if it is the Node app's secret, move it to SESSION_EXPRESS_SECRET, where it verifies express-session's cookie only"
				}
				bad("SESSION_SECRET_PREVIOUS", fmt.Sprintf("entry %d %s", i+1, why), fix)
			}
		}
	}
	if c.UsePostgres && !ownStore {
		if c.DatabaseURL == "" {
			bad("DATABASE_URL", "is not set but USE_POSTGRES=true", "set it to postgres://user:password@host:5432/database")
		} else if problem, fix := redact.URLProblem(c.DatabaseURL); problem != "" {
			bad("DATABASE_URL", problem+" (value not shown: it holds a password)", fix)
		} else if _, err := pgconn.ParseConfig(c.DatabaseURL); err != nil {
			bad("DATABASE_URL", "is not a valid PostgreSQL connection string (value not shown: it may hold a password)",
				"use the form postgres://user:password@host:5432/database, percent-encoding special characters in the password")
		}
	}
	if c.UseRedis && !ownStore {
		if c.UsePostgres {
			bad("USE_REDIS", "and USE_POSTGRES are both true, but sessions live in one store",
				"set only one of them: USE_REDIS=true with REDIS_URL, or USE_POSTGRES=true with DATABASE_URL")
		}
		if c.RedisURL == "" {
			bad("REDIS_URL", "is not set but USE_REDIS=true", "set it to redis://user:password@host:6379/0 (rediss:// for TLS; a cluster: redis://host1:7000?addr=host2:7000)")
		} else if _, err := redisurl.Parse(c.RedisURL, c.RedisCluster); err != nil {
			bad("REDIS_URL", redisurl.Redact(err.Error(), c.RedisURL), "")
		}
	}
	d := c.withDefaults()
	if c.CookieName != "" {
		if err := (&http.Cookie{Name: c.CookieName, Value: "x"}).Valid(); err != nil {
			bad("SESSION_COOKIE_NAME", fmt.Sprintf("is %q, not a valid cookie name", c.CookieName), "use letters, digits, '-' and '_'")
		}
	}
	if c.CookieDomain != "" {
		if problem := cookieDomainProblem(c.CookieDomain); problem != "" {
			bad("SESSION_COOKIE_DOMAIN", fmt.Sprintf("is %q, %s", c.CookieDomain, problem),
				"set it to a host name the app's hosts share, such as example.com, or unset it to keep the cookie to the host that set it")
		}
	}
	switch prefix, _ := defaults.CookiePrefix(c.CookieName); {
	case prefix == defaults.HostPrefix && c.CookieDomain != "":
		bad("SESSION_COOKIE_DOMAIN", fmt.Sprintf("is set but the cookie name %q starts with __Host-, which browsers then reject", c.CookieName),
			"unset SESSION_COOKIE_DOMAIN (the cookie then goes to this host only), or name the cookie without a prefix: production then adds __Secure-")
	case prefix != "" && !c.Production:
		bad("SESSION_COOKIE_NAME", fmt.Sprintf("is %q, a prefix browsers accept only on Secure cookies, which only production sends", c.CookieName),
			"choose a name without the prefix: production adds the right one")
	}
	if c.SameSite == http.SameSiteNoneMode && !c.Production {
		bad("SESSION_SAMESITE", "is none, which browsers accept only on Secure cookies, which only production sends", "use lax outside production")
	}
	if c.IdleTimeout > d.Lifetime {
		bad("SESSION_IDLE_TIMEOUT", fmt.Sprintf("(%s) is longer than SESSION_LIFETIME (%s), so it never applies", c.IdleTimeout, d.Lifetime), "make it shorter than the lifetime, or unset it")
	}
	if c.TouchInterval != 0 && c.IdleTimeout != 0 && c.TouchInterval >= c.IdleTimeout {
		bad("SESSION_TOUCH_INTERVAL", fmt.Sprintf("(%s) is not shorter than SESSION_IDLE_TIMEOUT (%s), so active users would time out", c.TouchInterval, c.IdleTimeout), "make it a small fraction of the idle timeout, or unset it")
	}
	if err := validateTableName(d.Table); err != nil {
		bad("SESSION_TABLE", err.Error(), `use "table" or "schema.table" with letters, digits and underscores`)
	}
	switch d.TokenSource {
	case "cookie", "header", "both":
	default:
		bad("SESSION_TOKEN_SOURCE", fmt.Sprintf("is %q", c.TokenSource), "set it to cookie (browsers), header (API clients) or both")
	}
	if c.TokenHeader != "" && !validHeaderName(c.TokenHeader) {
		bad("SESSION_TOKEN_HEADER", fmt.Sprintf("is %q, not a header name", c.TokenHeader), "use a name such as X-Session-Token, or Authorization for Bearer tokens")
	}
	if c.Lifetime < 0 || c.IdleTimeout < 0 || c.TouchInterval < 0 || c.StoreTimeout < 0 || c.PruneInterval < 0 {
		bad("SESSION_* durations", "include a negative value", "use positive durations")
	}
	c.validateExpress(d, ownStore, bad)
	return errors.Join(problems...)
}

// cookieDomainProblem returns why browsers would not take domain as a
// cookie's Domain, or "".
func cookieDomainProblem(domain string) string {
	d := defaults.CookieDomain(domain)
	switch {
	case net.ParseIP(strings.Trim(d, "[]")) != nil:
		return "an IP address: browsers take a Domain attribute only for a host name"
	case strings.Contains(d, ":"):
		return "which includes a port: a cookie's Domain is a host name alone"
	case d == "" || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, ".."):
		return "which has an empty label (a dot at an end, or two in a row)"
	}
	for _, r := range d {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
		case r >= 0x80:
			return "not a host name as cookies carry it: write an international name in its punycode (xn--) form"
		default:
			return "not a host name: use letters, digits and '-' between the dots"
		}
	}
	if suffix, _ := publicsuffix.PublicSuffix(d); suffix == d {
		return "a public suffix (like com, co.uk or github.io) or a single label: browsers refuse a cookie for every site under it"
	}
	return ""
}

// validateTableName accepts "table" or "schema.table" made of the characters
// an unquoted PostgreSQL identifier may hold. The store still quotes the
// name; this keeps configuration typos from becoming surprising tables.
func validateTableName(name string) error {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return fmt.Errorf("is %q: at most one dot (schema.table)", name)
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 {
			return fmt.Errorf("is %q: each part needs 1 to 63 characters", name)
		}
		for i, r := range p {
			ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
			if !ok {
				return fmt.Errorf("is %q: only letters, digits and underscores are allowed", name)
			}
		}
	}
	return nil
}

// String describes c for humans with secrets and the database password
// redacted, so that fmt's %v and %+v cannot leak them.
func (c Config) String() string {
	return c.LogValue().String()
}

// GoString is String for fmt's %#v.
func (c Config) GoString() string {
	return c.String()
}

// LogValue keeps secrets and the database password out of logs when a
// Config is logged with slog.
func (c Config) LogValue() slog.Value {
	redacted := func(s string) string {
		if s == "" {
			return ""
		}
		return "[redacted]"
	}
	// The settings as the Manager will use them, defaults applied: the
	// cookie name production prefixes, above all.
	d := c.withDefaults()
	db := ""
	if c.DatabaseURL != "" {
		db = redact.DatabaseURL(c.DatabaseURL)
	}
	redisWhere := ""
	if c.RedisURL != "" {
		redisWhere = redisurl.Describe(c.RedisURL, c.RedisCluster)
	}
	return slog.GroupValue(
		slog.Bool("production", c.Production),
		slog.String("mode", c.modeText()),
		slog.Bool("use_postgres", c.UsePostgres),
		slog.String("database", db),
		slog.String("secret", redacted(c.Secret)),
		slog.Int("previous_secrets", len(c.PreviousSecrets)),
		slog.Int("express_secrets", len(c.ExpressSecrets)),
		slog.String("cookie_name", d.CookieName),
		slog.String("cookie_domain", d.CookieDomain),
		slog.Duration("lifetime", d.Lifetime),
		slog.Duration("idle_timeout", d.IdleTimeout),
		slog.String("table", d.Table),
		slog.Int("max_size", d.MaxSize),
		slog.Bool("use_redis", c.UseRedis),
		slog.String("redis", redisWhere),
	)
}
