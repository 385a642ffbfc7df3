package session

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/smartscheduler/session/internal/defaults"
	"github.com/smartscheduler/session/internal/redact"
	"github.com/smartscheduler/session/internal/redisurl"
)

// minSecretLength is the shortest SESSION_SECRET production accepts, in bytes.
const minSecretLength = 32

// Config is everything a Manager needs. ConfigFromEnv fills it from the
// environment; it is equally usable built in code. The zero value of every
// field means its documented default, so Config{} is a working development
// configuration.
type Config struct {
	// Production switches on production mode (NODE_ENV or APP_ENV set to
	// "production"): cookies are Secure, the default cookie name carries the
	// __Host- prefix, and Validate refuses weak secrets and the memory store.
	// The default is false.
	Production bool

	// UsePostgres selects the PostgreSQL store (USE_POSTGRES=true). The
	// default is false: the in-memory store.
	UsePostgres bool

	// DatabaseURL is the PostgreSQL connection string (DATABASE_URL), used
	// when UsePostgres is true.
	DatabaseURL string

	// Secret signs session cookies (SESSION_SECRET). Production requires at
	// least minSecretLength bytes. In development an empty Secret is replaced
	// by a random one that lives as long as the process.
	Secret string

	// PreviousSecrets are retired secrets (SESSION_SECRET_PREVIOUS,
	// comma-separated) whose cookies are still accepted and re-issued signed
	// with Secret, so rotating the secret logs nobody out. The default is
	// none.
	PreviousSecrets []string

	// AllowMemoryStore lets production run on the in-memory store
	// (SESSION_ALLOW_MEMORY_STORE=true), accepting a single process whose
	// sessions are lost on restart. The default is false.
	AllowMemoryStore bool

	// CookieName is the session cookie's name (SESSION_COOKIE_NAME). The
	// default is "session", or "__Host-session" in production when
	// CookieDomain is empty.
	CookieName string

	// CookieDomain is the cookie's Domain attribute (SESSION_COOKIE_DOMAIN).
	// The default is empty: the cookie is sent only to the host that set it.
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
	// Set refuses a value that would exceed it. The default is 0: no cap.
	MaxSize int

	// StoreTimeout bounds every store call and the start-up connection check
	// (SESSION_STORE_TIMEOUT). The default is 5 seconds.
	StoreTimeout time.Duration

	// PruneInterval is how often expired sessions are deleted
	// (SESSION_PRUNE_INTERVAL), with jitter so instances spread out. The
	// default is 5 minutes.
	PruneInterval time.Duration

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
	defaultStoreTimeout  = 5 * time.Second
	defaultPruneInterval = 5 * time.Minute
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.CookieName == "" {
		c.CookieName = defaults.CookieName(c.Production, c.CookieDomain)
	}
	if c.SameSite == 0 {
		c.SameSite = http.SameSiteLaxMode
	}
	if c.Lifetime == 0 {
		c.Lifetime = defaultLifetime
	}
	if c.TouchInterval == 0 {
		c.TouchInterval = c.IdleTimeout / 10
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

	env := get("NODE_ENV")
	if env == "" {
		env = get("APP_ENV")
	}
	c.Production = strings.EqualFold(env, "production")
	parseBool("USE_POSTGRES", &c.UsePostgres)
	c.DatabaseURL = get("DATABASE_URL")
	c.Secret = get("SESSION_SECRET")
	if v := get("SESSION_SECRET_PREVIOUS"); v != "" {
		for s := range strings.SplitSeq(v, ",") {
			c.PreviousSecrets = append(c.PreviousSecrets, strings.TrimSpace(s))
		}
	}
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
		if err != nil || n < 0 {
			bad("SESSION_MAX_SIZE", fmt.Sprintf("is %q, not a size in bytes", v), "set it to a whole number of bytes, or leave it unset for no cap")
		} else {
			c.MaxSize = n
		}
	}
	if err := c.Validate(); err != nil {
		problems = append(problems, err.(interface{ Unwrap() []error }).Unwrap()...)
	}
	return c, errors.Join(problems...)
}

// placeholderSecrets are values copied from documentation and tutorials.
var placeholderSecrets = map[string]bool{
	"<random-secure-string>": true, "changeme": true, "change-me": true, "change_me": true,
	"secret": true, "keyboard cat": true, "password": true, "session_secret": true,
	"session-secret": true, "your-secret": true, "your-secret-here": true, "mysecret": true,
	"supersecret": true, "development": true, "test": true, "default": true,
}

// secretWeakness returns why s is unusable as a production secret, or "".
func secretWeakness(s string) string {
	lower := strings.ToLower(strings.TrimSpace(s))
	distinct := map[rune]bool{}
	for _, r := range s {
		distinct[r] = true
	}
	switch {
	case placeholderSecrets[lower] || (strings.HasPrefix(lower, "<") && strings.HasSuffix(lower, ">")):
		return "is a placeholder copied from documentation"
	case len(s) < minSecretLength:
		return fmt.Sprintf("is %d bytes; production needs at least %d", len(s), minSecretLength)
	case len(distinct) < 8:
		return "repeats too few characters to be random"
	}
	return ""
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
			bad("SESSION_SECRET", why, secretFix)
		}
		if !c.UsePostgres && !c.UseRedis && !c.AllowMemoryStore && !ownStore {
			bad("USE_POSTGRES", "is not true; the memory store loses every session on restart and cannot be shared by instances",
				"set USE_POSTGRES=true and DATABASE_URL, or SESSION_ALLOW_MEMORY_STORE=true to accept a single process")
		}
	}
	for i, s := range c.PreviousSecrets {
		if strings.TrimSpace(s) == "" {
			bad("SESSION_SECRET_PREVIOUS", fmt.Sprintf("entry %d is empty", i+1), "list old secrets separated by single commas")
		} else if s == c.Secret {
			bad("SESSION_SECRET_PREVIOUS", fmt.Sprintf("entry %d equals SESSION_SECRET", i+1), "remove it; the current secret is always accepted")
		}
	}
	if c.UsePostgres && !ownStore {
		if c.DatabaseURL == "" {
			bad("DATABASE_URL", "is not set but USE_POSTGRES=true", "set it to postgres://user:password@host:5432/database")
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
	if strings.HasPrefix(d.CookieName, "__Host-") && c.CookieDomain != "" {
		bad("SESSION_COOKIE_DOMAIN", "is set but the cookie name starts with __Host-, which browsers then reject", "unset SESSION_COOKIE_DOMAIN or choose a name without the __Host- prefix")
	}
	if (strings.HasPrefix(d.CookieName, "__Host-") || strings.HasPrefix(d.CookieName, "__Secure-")) && !c.Production {
		bad("SESSION_COOKIE_NAME", fmt.Sprintf("is %q, a prefix browsers accept only on Secure cookies, which only production sends", d.CookieName), "choose a name without the prefix outside production")
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
	if c.MaxSize < 0 {
		bad("SESSION_MAX_SIZE", "is negative", "use a positive number of bytes, or 0 for no cap")
	}
	if c.Lifetime < 0 || c.IdleTimeout < 0 || c.TouchInterval < 0 || c.StoreTimeout < 0 || c.PruneInterval < 0 {
		bad("SESSION_* durations", "include a negative value", "use positive durations")
	}
	return errors.Join(problems...)
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
		slog.Bool("use_postgres", c.UsePostgres),
		slog.String("database", db),
		slog.String("secret", redacted(c.Secret)),
		slog.Int("previous_secrets", len(c.PreviousSecrets)),
		slog.String("cookie_name", c.CookieName),
		slog.Duration("lifetime", c.Lifetime),
		slog.Duration("idle_timeout", c.IdleTimeout),
		slog.String("table", c.Table),
		slog.Bool("use_redis", c.UseRedis),
		slog.String("redis", redisWhere),
	)
}
