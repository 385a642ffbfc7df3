package session_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smartscheduler/session"
)

// 32 bytes, many characters

func TestConfigFromLookup(t *testing.T) {
	t.Parallel()
	prod := func(env map[string]string) map[string]string {
		out := map[string]string{"NODE_ENV": "production", "SESSION_ALLOW_MEMORY_STORE": "true", "SESSION_SECRET": goodSecret}
		maps.Copy(out, env)
		return out
	}
	tests := []struct {
		name        string
		env         map[string]string
		wantVars    []string // variables the error names, sorted
		wantText    []string // substrings of the error
		notText     []string // never in the error
		checkConfig func(t *testing.T, c session.Config)
	}{
		{
			name: "development defaults",
			env:  map[string]string{},
			checkConfig: func(t *testing.T, c session.Config) {
				if c.Production || c.UsePostgres || c.Secret != "" || c.ManualMigrations {
					t.Errorf("empty environment gave %+v", c)
				}
			},
		},
		{
			name:     "production missing everything",
			env:      map[string]string{"NODE_ENV": "production"},
			wantVars: []string{"SESSION_SECRET", "USE_POSTGRES"},
			wantText: []string{"sessionctl secret", "SESSION_ALLOW_MEMORY_STORE=true"},
		},
		{
			name:     "APP_ENV=production",
			env:      map[string]string{"APP_ENV": "production"},
			wantVars: []string{"SESSION_SECRET", "USE_POSTGRES"},
			checkConfig: func(t *testing.T, c session.Config) {
				if !c.Production {
					t.Error("APP_ENV=production did not select production")
				}
			},
		},
		{
			name:     "NODE_ENV=Production, any case",
			env:      map[string]string{"NODE_ENV": "Production"},
			wantVars: []string{"SESSION_SECRET", "USE_POSTGRES"},
		},
		{name: "placeholder <random-secure-string>", env: prod(map[string]string{"SESSION_SECRET": "<random-secure-string>"}), wantVars: []string{"SESSION_SECRET"}, wantText: []string{"placeholder"}},
		{name: "placeholder keyboard cat", env: prod(map[string]string{"SESSION_SECRET": "keyboard cat"}), wantVars: []string{"SESSION_SECRET"}, wantText: []string{"placeholder"}},
		{name: "placeholder changeme", env: prod(map[string]string{"SESSION_SECRET": "changeme"}), wantVars: []string{"SESSION_SECRET"}, wantText: []string{"placeholder"}},
		{name: "placeholder in capitals", env: prod(map[string]string{"SESSION_SECRET": "ChangeMe"}), wantVars: []string{"SESSION_SECRET"}, wantText: []string{"placeholder"}},
		{
			name:     "12-byte secret",
			env:      prod(map[string]string{"SESSION_SECRET": "k2#Lx9!mQz4w"}),
			wantVars: []string{"SESSION_SECRET"},
			wantText: []string{"is 12 bytes", "at least 32"},
			notText:  []string{"k2#Lx9!mQz4w"},
		},
		{
			name:     "long but repetitive secret",
			env:      prod(map[string]string{"SESSION_SECRET": strings.Repeat("ab", 20)}),
			wantVars: []string{"SESSION_SECRET"},
			wantText: []string{"predictable", "a repeated block"},
		},
		{name: "memory store allowed in production", env: prod(nil)},
		{
			name:     "USE_POSTGRES without DATABASE_URL",
			env:      map[string]string{"USE_POSTGRES": "true"},
			wantVars: []string{"DATABASE_URL"},
		},
		{
			name:     "unparsable DATABASE_URL with a password",
			env:      map[string]string{"USE_POSTGRES": "true", "DATABASE_URL": "postgres://admin:hunter2-Sup3rSecret@db.example.com:notaport/app"},
			wantVars: []string{"DATABASE_URL"},
			notText:  []string{"hunter2-Sup3rSecret", "admin"},
		},
		{
			name:     "unparsable keyword DATABASE_URL with a password",
			env:      map[string]string{"USE_POSTGRES": "true", "DATABASE_URL": "host=db password=hunter2-Sup3rSecret sslmode=sometimes"},
			wantVars: []string{"DATABASE_URL"},
			notText:  []string{"hunter2-Sup3rSecret"},
		},
		{
			name: "complete production",
			env: map[string]string{
				"NODE_ENV": "production", "USE_POSTGRES": "true", "DATABASE_URL": "postgres://app:pw@db:5432/app",
				"SESSION_SECRET": " " + goodSecret + " ", "SESSION_SECRET_PREVIOUS": oldSecrets[0] + ", " + oldSecrets[1],
				"SESSION_SAMESITE": "Strict", "SESSION_LIFETIME": "720h", "SESSION_IDLE_TIMEOUT": "30m",
				"SESSION_TOUCH_INTERVAL": "1m", "SESSION_TABLE": "auth.sessions", "SESSION_AUTO_MIGRATE": "false",
				"SESSION_MAX_SIZE": "4096", "SESSION_STORE_TIMEOUT": "2s", "SESSION_PRUNE_INTERVAL": "10m",
				"SESSION_COOKIE_NAME": "__Host-sid",
			},
			checkConfig: func(t *testing.T, c session.Config) {
				want := session.Config{
					Production: true, UsePostgres: true, DatabaseURL: "postgres://app:pw@db:5432/app", Secret: goodSecret,
					PreviousSecrets: oldSecrets, CookieName: "__Host-sid",
					SameSite: http.SameSiteStrictMode, Lifetime: 720 * time.Hour, IdleTimeout: 30 * time.Minute,
					TouchInterval: time.Minute, Table: "auth.sessions", ManualMigrations: true, MaxSize: 4096,
					StoreTimeout: 2 * time.Second, PruneInterval: 10 * time.Minute,
				}
				if diff := differentFields(c, want); len(diff) > 0 {
					t.Errorf("fields %v differ: got %#v\nwant %#v", diff, c, want)
				}
			},
		},
		{name: "bad SESSION_LIFETIME", env: map[string]string{"SESSION_LIFETIME": "forever"}, wantVars: []string{"SESSION_LIFETIME"}, wantText: []string{`"forever"`}},
		{name: "negative SESSION_IDLE_TIMEOUT", env: map[string]string{"SESSION_IDLE_TIMEOUT": "-5m"}, wantVars: []string{"SESSION_IDLE_TIMEOUT"}},
		{name: "unitless SESSION_STORE_TIMEOUT", env: map[string]string{"SESSION_STORE_TIMEOUT": "5"}, wantVars: []string{"SESSION_STORE_TIMEOUT"}},
		{name: "bad SESSION_TOUCH_INTERVAL", env: map[string]string{"SESSION_TOUCH_INTERVAL": "often"}, wantVars: []string{"SESSION_TOUCH_INTERVAL"}},
		{name: "bad SESSION_PRUNE_INTERVAL", env: map[string]string{"SESSION_PRUNE_INTERVAL": "1x"}, wantVars: []string{"SESSION_PRUNE_INTERVAL"}},
		{name: "bad USE_POSTGRES", env: map[string]string{"USE_POSTGRES": "yes please"}, wantVars: []string{"USE_POSTGRES"}},
		{name: "bad SESSION_ALLOW_MEMORY_STORE", env: map[string]string{"SESSION_ALLOW_MEMORY_STORE": "maybe"}, wantVars: []string{"SESSION_ALLOW_MEMORY_STORE"}},
		{name: "bad SESSION_AUTO_MIGRATE", env: map[string]string{"SESSION_AUTO_MIGRATE": "nope"}, wantVars: []string{"SESSION_AUTO_MIGRATE"}},
		{name: "bad SESSION_SAMESITE", env: map[string]string{"SESSION_SAMESITE": "loose"}, wantVars: []string{"SESSION_SAMESITE"}},
		{name: "SameSite none outside production", env: map[string]string{"SESSION_SAMESITE": "none"}, wantVars: []string{"SESSION_SAMESITE"}},
		{name: "bad SESSION_MAX_SIZE", env: map[string]string{"SESSION_MAX_SIZE": "1MB"}, wantVars: []string{"SESSION_MAX_SIZE"}},
		{name: "negative SESSION_MAX_SIZE", env: map[string]string{"SESSION_MAX_SIZE": "-1"}, wantVars: []string{"SESSION_MAX_SIZE"}},
		{name: "SESSION_TABLE with a quote", env: map[string]string{"SESSION_TABLE": `session"`}, wantVars: []string{"SESSION_TABLE"}},
		{name: "SESSION_TABLE with a semicolon", env: map[string]string{"SESSION_TABLE": "session; DROP TABLE users"}, wantVars: []string{"SESSION_TABLE"}},
		{name: "SESSION_TABLE with two dots", env: map[string]string{"SESSION_TABLE": "a.b.c"}, wantVars: []string{"SESSION_TABLE"}},
		{name: "SESSION_TABLE with a dash", env: map[string]string{"SESSION_TABLE": "my-sessions"}, wantVars: []string{"SESSION_TABLE"}},
		{name: "SESSION_TABLE starting with a digit", env: map[string]string{"SESSION_TABLE": "1sessions"}, wantVars: []string{"SESSION_TABLE"}},
		{name: "bad SESSION_COOKIE_NAME", env: map[string]string{"SESSION_COOKIE_NAME": "my session"}, wantVars: []string{"SESSION_COOKIE_NAME"}},
		{name: "__Host- cookie outside production", env: map[string]string{"SESSION_COOKIE_NAME": "__Host-s"}, wantVars: []string{"SESSION_COOKIE_NAME"}},
		{name: "__Host- cookie with a domain", env: prod(map[string]string{"SESSION_COOKIE_NAME": "__Host-s", "SESSION_COOKIE_DOMAIN": "example.com"}), wantVars: []string{"SESSION_COOKIE_DOMAIN"}},
		{name: "production cookie domain", env: prod(map[string]string{"SESSION_COOKIE_DOMAIN": "example.com"})},
		{name: "idle timeout beyond the lifetime", env: map[string]string{"SESSION_LIFETIME": "1h", "SESSION_IDLE_TIMEOUT": "2h"}, wantVars: []string{"SESSION_IDLE_TIMEOUT"}},
		{name: "touch interval not under the idle timeout", env: map[string]string{"SESSION_IDLE_TIMEOUT": "10m", "SESSION_TOUCH_INTERVAL": "10m"}, wantVars: []string{"SESSION_TOUCH_INTERVAL"}},
		{name: "empty previous secret", env: map[string]string{"SESSION_SECRET_PREVIOUS": "old-secret-one,,old-secret-two"}, wantVars: []string{"SESSION_SECRET_PREVIOUS"}},
		{
			name:     "previous secret equal to the current one",
			env:      prod(map[string]string{"SESSION_SECRET_PREVIOUS": goodSecret}),
			wantVars: []string{"SESSION_SECRET_PREVIOUS"},
			notText:  []string{goodSecret},
		},
		{
			name: "every problem at once",
			env: map[string]string{
				"NODE_ENV": "production", "SESSION_SECRET": "changeme", "SESSION_LIFETIME": "soon",
				"SESSION_SAMESITE": "loose", "SESSION_TABLE": "x;y", "USE_POSTGRES": "true",
			},
			wantVars: []string{"DATABASE_URL", "SESSION_LIFETIME", "SESSION_SAMESITE", "SESSION_SECRET", "SESSION_TABLE"},
			notText:  []string{"changeme"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := session.ConfigFromLookup(lookupFrom(tt.env))
			if got := problemVariables(err); !slices.Equal(got, tt.wantVars) {
				t.Errorf("problems with %q, want %q; error:\n%v", got, tt.wantVars, err)
			}
			if len(tt.wantVars) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
			} else {
				if n := len(configErrors(err)); n != len(tt.wantVars) {
					t.Errorf("%d problems reported, want %d: %v", n, len(tt.wantVars), err)
				}
				for _, v := range tt.wantVars {
					if !strings.Contains(err.Error(), v) {
						t.Errorf("error does not name %s: %v", v, err)
					}
				}
				for _, ce := range configErrors(err) {
					if ce.Fix == "" {
						t.Errorf("problem %q names no fix", ce)
					}
				}
			}
			for _, s := range tt.wantText {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
			for _, s := range tt.notText {
				if err != nil && strings.Contains(err.Error(), s) {
					t.Errorf("error reveals %q: %v", s, err)
				}
			}
			if tt.checkConfig != nil {
				tt.checkConfig(t, c)
			}
		})
	}
}

// oldSecrets are retired secrets strong enough for production.
var oldSecrets = []string{"Qm8xV2nB7cK4zL9pW3rT6yH1jF5dS0gAe", "tY7uI2oP9aS4dF6gH1jK3lZ8xC5vB0nMq"}

func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	cfg := session.Config{
		Production:  true,
		Secret:      "tooshort",
		Lifetime:    time.Hour,
		IdleTimeout: 2 * time.Hour,
		Table:       "bad;table",
		SameSite:    http.SameSiteNoneMode,
	}
	m, err := session.New(context.Background(), cfg, session.WithLogger(discardLogger))
	if err == nil {
		m.Close()
		t.Fatal("New accepted a bad configuration")
	}
	want := []string{"SESSION_IDLE_TIMEOUT", "SESSION_SECRET", "SESSION_TABLE", "USE_POSTGRES"}
	if got := problemVariables(err); !slices.Equal(got, want) {
		t.Errorf("New reported %q, want %q:\n%v", got, want, err)
	}
	if strings.Contains(err.Error(), "tooshort") {
		t.Errorf("New's error reveals the secret: %v", err)
	}
}

func TestNewWarnsOnceWithoutSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cfg       session.Config
		wantWarns int
	}{
		{name: "development without a secret", cfg: session.Config{}, wantWarns: 1},
		{name: "development with a secret", cfg: session.Config{Secret: goodSecret}},
		{name: "production", cfg: session.Config{Production: true, AllowMemoryStore: true, Secret: goodSecret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			m, err := session.New(context.Background(), tt.cfg, session.WithLogger(logger))
			if err != nil {
				t.Fatal(err)
			}
			m.Close() // stops the pruner, so buf is ours alone
			secret := session.SecretOf(m)
			if secret == "" {
				t.Fatal("the Manager runs without a secret")
			}
			warns := 0
			for line := range strings.Lines(buf.String()) {
				var rec struct{ Level string }
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if rec.Level == "WARN" {
					warns++
				}
			}
			if warns != tt.wantWarns {
				t.Errorf("New logged %d warnings, want %d:\n%s", warns, tt.wantWarns, buf.String())
			}
			if strings.Contains(buf.String(), secret) {
				t.Errorf("log reveals the secret:\n%s", buf.String())
			}
		})
	}
}

func TestConfigLogValue(t *testing.T) {
	t.Parallel()
	const password = "hunter2-Sup3rSecret"
	tests := []struct {
		name         string
		databaseURL  string
		wantDatabase string
	}{
		{name: "URL", databaseURL: "postgres://admin:" + password + "@db.example.com:5432/app", wantDatabase: "db.example.com:5432/app"},
		{name: "keyword form", databaseURL: "host=db.example.com port=5433 dbname=app user=admin password=" + password, wantDatabase: "db.example.com:5433/app"},
		{name: "unparsable URL", databaseURL: "postgres://admin:" + password + "@db.example.com:notaport/app"},
		{name: "unparsable keyword form", databaseURL: "host=db password=" + password + " sslmode=sometimes"},
		{name: "password in the query", databaseURL: "postgres://db.example.com/app?password=" + password + "&sslmode=sometimes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := session.Config{
				Production:      true,
				UsePostgres:     true,
				DatabaseURL:     tt.databaseURL,
				Secret:          goodSecret,
				PreviousSecrets: []string{"previous-" + goodSecret},
			}
			for _, format := range []string{"json", "text"} {
				var buf bytes.Buffer
				var h slog.Handler = slog.NewTextHandler(&buf, nil)
				if format == "json" {
					h = slog.NewJSONHandler(&buf, nil)
				}
				slog.New(h).Info("starting", "config", cfg)
				out := buf.String()
				for _, secret := range []string{goodSecret, password, "admin"} {
					if strings.Contains(out, secret) {
						t.Errorf("%s log reveals %q: %s", format, secret, out)
					}
				}
				if !strings.Contains(out, "[redacted]") || !strings.Contains(out, "previous_secrets") {
					t.Errorf("%s log lacks the redacted fields: %s", format, out)
				}
				if tt.wantDatabase != "" && !strings.Contains(out, tt.wantDatabase) {
					t.Errorf("%s log lacks the database %q: %s", format, tt.wantDatabase, out)
				}
			}
		})
	}
}

// FuzzConfigFromLookup feeds arbitrary environments, one VAR=value a line.
// It must not panic, and no error may quote SESSION_SECRET or the
// DATABASE_URL password.
func FuzzConfigFromLookup(f *testing.F) {
	seeds := []string{
		"",
		"NODE_ENV=production",
		"APP_ENV=production\nSESSION_SECRET=keyboard cat",
		"NODE_ENV=production\nSESSION_SECRET=" + goodSecret + "\nSESSION_ALLOW_MEMORY_STORE=true",
		"USE_POSTGRES=true\nDATABASE_URL=postgres://admin:hunter2@db:badport/app",
		"USE_POSTGRES=true\nDATABASE_URL=host=db password=hunter2 sslmode=maybe",
		"USE_POSTGRES=1\nDATABASE_URL=postgres://u:p%zz@h/db",
		"SESSION_LIFETIME=-1h\nSESSION_IDLE_TIMEOUT=2h\nSESSION_TOUCH_INTERVAL=3h",
		"SESSION_SAMESITE=none\nSESSION_COOKIE_NAME=__Host-x\nSESSION_COOKIE_DOMAIN=example.com",
		"SESSION_TABLE=a.b.c\nSESSION_MAX_SIZE=-5\nSESSION_AUTO_MIGRATE=maybe",
		"SESSION_SECRET=" + goodSecret + "\nSESSION_SECRET_PREVIOUS=" + goodSecret + ",,x",
		"NODE_ENV=production\nSESSION_SECRET=s 11 bytes;",
		"SESSION_COOKIE_NAME=\x00\xff\nSESSION_TABLE=\"; drop",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	// Every fixed text the secret and database checks can print, so that a
	// fuzzed value that merely occurs in it is not taken for a leak.
	known := fmt.Sprint(
		session.Config{Production: true}.Validate(),
		session.Config{Production: true, Secret: "changeme"}.Validate(),
		session.Config{Production: true, Secret: strings.Repeat("a", 40)}.Validate(),
		session.Config{Secret: "x", PreviousSecrets: []string{"x", ""}}.Validate(),
		session.Config{UsePostgres: true}.Validate(),
		session.Config{UsePostgres: true, DatabaseURL: "::"}.Validate(),
	)
	f.Fuzz(func(t *testing.T, input string) {
		env := map[string]string{}
		for line := range strings.Lines(input) {
			name, value, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
			env[name] = value
		}
		cfg, err := session.ConfigFromLookup(lookupFrom(env))
		_ = cfg.LogValue().String()
		if err == nil {
			return
		}
		without := func(name string) string {
			rest := maps.Clone(env)
			delete(rest, name)
			_, err := session.ConfigFromLookup(lookupFrom(rest))
			return fmt.Sprint(err)
		}
		// leaked reports whether value, taken from variable name, shows in
		// err for no reason other than being that variable's value.
		leaked := func(name, value string) bool {
			if len(value) < 4 || strings.Contains(value, "\n") || strings.Contains(known, value) {
				return false
			}
			for other, v := range env {
				if other != name && (strings.Contains(v, value) || strings.Contains(fmt.Sprintf("%q", v), value)) {
					return false
				}
			}
			lengthText := fmt.Sprint(session.Config{Production: true, Secret: strings.Repeat("\x01", len(value))}.Validate())
			if strings.Contains(lengthText, value) || strings.Contains(without(name), value) {
				return false
			}
			return strings.Contains(err.Error(), value)
		}
		if secret := strings.TrimSpace(env["SESSION_SECRET"]); leaked("SESSION_SECRET", secret) {
			t.Fatalf("error reveals SESSION_SECRET %q:\n%v", secret, err)
		}
		if password := databasePassword(strings.TrimSpace(env["DATABASE_URL"])); leaked("DATABASE_URL", password) {
			t.Fatalf("error reveals the DATABASE_URL password %q:\n%v", password, err)
		}
	})
}

// databasePassword digs the password out of a connection string, even one
// that does not parse.
func databasePassword(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			return p
		}
	}
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, p, ok := strings.Cut(rest[:at], ":"); ok {
				return p
			}
		}
	}
	for _, field := range strings.Fields(dsn) {
		if p, ok := strings.CutPrefix(field, "password="); ok {
			return strings.Trim(p, "'")
		}
	}
	return ""
}

// TestDatabasePasswordRedactedStructurally is the review's item 13: a
// password with an unencoded '@' and '#' must show nowhere, not even the
// part pgx would take for a host name, and redaction must not garble words
// that merely equal the password (a user name, "p" in "lookup").
func TestDatabasePasswordRedactedStructurally(t *testing.T) {
	t.Parallel()
	const pasted = "postgres://app:Secr3t@Pr0d#2024@db.example.com/app"
	fragments := []string{"Secr3t", "Pr0d", "2024"}
	cfg := session.Config{UsePostgres: true, DatabaseURL: pasted, StoreTimeout: time.Second}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("starting", "config", cfg)
	shown := map[string]string{"String": cfg.String(), "log": logs.String()}
	_, err := session.ConfigFromLookup(lookupFrom(map[string]string{"USE_POSTGRES": "true", "DATABASE_URL": pasted}))
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "%40") {
		t.Errorf("ConfigFromLookup accepted a password with an unencoded '@', or did not say how to encode it: %v", err)
	}
	shown["ConfigFromLookup"] = fmt.Sprint(err)
	m, err := session.New(t.Context(), cfg, session.WithLogger(discardLogger))
	if err == nil {
		m.Close()
		t.Fatal("New accepted a DATABASE_URL whose password holds an unencoded '@'")
	}
	for _, e := range chain(err) {
		shown["New: "+fmt.Sprintf("%T", e)] = e.Error() + fmt.Sprintf(" %+v %#v", e, e)
	}
	for where, text := range shown {
		for _, f := range fragments {
			if strings.Contains(text, f) {
				t.Errorf("%s shows %q of the password: %s", where, f, text)
			}
		}
	}
	if !strings.Contains(cfg.String(), "db.example.com") {
		t.Errorf("Config.String does not show the host the URL names: %s", cfg.String())
	}

	// Words that equal the password stay as they are.
	for _, tc := range []struct{ databaseURL, want string }{
		{fmt.Sprintf("postgres://app:app@127.0.0.1:%d/app?sslmode=disable", closedPort(t)), "user=app database=app"},
		{"host=nosuch.invalid user=app password=p dbname=app sslmode=disable connect_timeout=2", "lookup nosuch.invalid"},
	} {
		m, err := session.New(t.Context(), session.Config{UsePostgres: true, DatabaseURL: tc.databaseURL, StoreTimeout: 2 * time.Second}, session.WithLogger(discardLogger))
		if err == nil {
			m.Close()
			t.Fatalf("New connected to %s", tc.want)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New's error garbles %q: %v", tc.want, err)
		}
	}
}

// TestNoWayOfPrintingAConfigShowsASecret is the review's item 12:
// encoding/json printed the secret, the previous secrets and the database
// password. Every way a program is likely to print a Config is tried, the
// Config alone, by pointer and inside a struct of the caller's.
func TestNoWayOfPrintingAConfigShowsASecret(t *testing.T) {
	t.Parallel()
	const password = "hunter2-Sup3rSecret"
	previous := "previous-" + goodSecret
	cfg := session.Config{
		Production:      true,
		UsePostgres:     true,
		DatabaseURL:     "postgres://admin:" + password + "@db.example.com:5432/app",
		Secret:          goodSecret,
		PreviousSecrets: []string{previous},
	}
	type appConfig struct {
		Sessions session.Config
		Port     int
	}
	var outputs []string
	for _, v := range []any{cfg, &cfg, appConfig{Sessions: cfg}} {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, string(data))
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			outputs = append(outputs, fmt.Sprintf(verb, v))
		}
		for _, h := range []func(io.Writer) slog.Handler{
			func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
			func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		} {
			var buf bytes.Buffer
			slog.New(h(&buf)).Info("starting", "config", v)
			outputs = append(outputs, buf.String())
		}
	}
	outputs = append(outputs, fmt.Sprint(session.Config{Production: true, Secret: goodSecret, PreviousSecrets: []string{"short"}}.Validate()))
	for _, out := range outputs {
		for _, secret := range []string{goodSecret, password} {
			if strings.Contains(out, secret) {
				t.Errorf("output shows a secret or the database password: %s", out)
			}
		}
	}
}

// TestProductionModeFailsClosed is the review's item 9: a typo in NODE_ENV
// used to turn production off without a word. Only explicit development
// values do now, and the log line a Config makes says which mode and why.
func TestProductionModeFailsClosed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		nodeEnv, appEnv *string // nil: unset
		production      bool
		mode            string // fragment of the "mode" LogValue attribute
		problem         string // fragment of a NODE_ENV problem, "" for none
	}{
		{production: false, mode: "development (NODE_ENV and APP_ENV are not set)"},
		{nodeEnv: ptr(""), production: false, mode: "development"},
		{nodeEnv: ptr("development"), production: false, mode: `development (NODE_ENV="development")`},
		{nodeEnv: ptr("  Development\t"), production: false, mode: "development"},
		{nodeEnv: ptr("dev"), production: false},
		{nodeEnv: ptr("TEST"), production: false},
		{nodeEnv: ptr("local"), production: false},
		{appEnv: ptr("local"), production: false, mode: `APP_ENV="local"`},
		{nodeEnv: ptr("test"), appEnv: ptr("dev"), production: false},
		{nodeEnv: ptr("production"), production: true, mode: `production (NODE_ENV="production")`},
		{nodeEnv: ptr("Production "), production: true},
		{nodeEnv: ptr("prod"), production: true, mode: `production (NODE_ENV="prod" is not development, dev, test or local)`},
		{nodeEnv: ptr("staging"), production: true},
		{nodeEnv: ptr("production;"), production: true},
		{nodeEnv: ptr("development\u200b"), production: true, mode: `NODE_ENV="development\u200b"`},
		{nodeEnv: ptr("development\u00a0"), production: true, mode: `NODE_ENV="development\u00a0"`},
		{nodeEnv: ptr("\u00a0dev"), production: true},
		{nodeEnv: ptr("te\u017ft"), production: true}, // a long s, which folds to "s"
		{appEnv: ptr("prod"), production: true, mode: `APP_ENV="prod"`},
		{nodeEnv: ptr(""), appEnv: ptr("production"), production: true},
		{nodeEnv: ptr("prod"), appEnv: ptr("production"), production: true},
		{nodeEnv: ptr("production"), appEnv: ptr("development"), production: true, problem: `is "production" but APP_ENV is "development"`},
		{nodeEnv: ptr("dev"), appEnv: ptr("staging"), production: true, problem: `is "dev" but APP_ENV is "staging"`},
	}
	for _, tt := range tests {
		env := map[string]string{"SESSION_SECRET": goodSecret, "SESSION_ALLOW_MEMORY_STORE": "true"}
		if tt.nodeEnv != nil {
			env["NODE_ENV"] = *tt.nodeEnv
		}
		if tt.appEnv != nil {
			env["APP_ENV"] = *tt.appEnv
		}
		name := fmt.Sprintf("NODE_ENV=%s APP_ENV=%s", show(tt.nodeEnv), show(tt.appEnv))
		c, err := session.ConfigFromLookup(lookupFrom(env))
		if c.Production != tt.production {
			t.Errorf("%s: Production = %v, want %v", name, c.Production, tt.production)
		}
		var problems []string
		for _, ce := range configErrors(err) {
			problems = append(problems, ce.Error())
		}
		switch {
		case tt.problem == "" && err != nil:
			t.Errorf("%s: unexpected error %v", name, err)
		case tt.problem != "" && (len(problems) != 1 || !strings.Contains(problems[0], tt.problem) || !strings.Contains(problems[0], "NODE_ENV") || !strings.Contains(problems[0], "APP_ENV")):
			t.Errorf("%s: problems %q, want one naming NODE_ENV and APP_ENV and saying %q", name, problems, tt.problem)
		}
		mode := ""
		for _, a := range c.LogValue().Group() {
			if a.Key == "mode" {
				mode = a.Value.String()
			}
		}
		want := map[bool]string{true: "production", false: "development"}[tt.production]
		if !strings.HasPrefix(mode, want) || !strings.Contains(mode, tt.mode) {
			t.Errorf("%s: mode %q, want it to start %q and say %q", name, mode, want, tt.mode)
		}
		if !strings.Contains(c.String(), mode) {
			t.Errorf("%s: String() %q lacks the mode", name, c.String())
		}
	}
	// A Config built in code says so.
	for _, c := range []session.Config{{}, {Production: true}} {
		var mode string
		for _, a := range c.LogValue().Group() {
			if a.Key == "mode" {
				mode = a.Value.String()
			}
		}
		if !strings.Contains(mode, "Config.Production") {
			t.Errorf("Config{Production: %v}: mode %q does not say it was set in code", c.Production, mode)
		}
	}
}

// differentFields names the exported fields in which a and b differ (the
// unexported ones only record how a Config was made).
func differentFields(a, b session.Config) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var diff []string
	for i := range va.NumField() {
		if f := va.Type().Field(i); f.IsExported() && !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			diff = append(diff, f.Name)
		}
	}
	return diff
}

func ptr(s string) *string { return &s }

func show(s *string) string {
	if s == nil {
		return "(unset)"
	}
	return strconv.Quote(*s)
}

// weakSecrets mirror the review's item 10: secrets of 32 bytes or more,
// so that only their patterns can fail them, made the ways people make up
// secrets. The previous check (at least 8 distinct characters) accepted
// 18 of these 28.
var weakSecrets = []string{
	"abcdefghijklmnopqrstuvwxyz0123456789",
	"0123456789012345678901234567890123456789",
	"qwertyuiopasdfghjklzxcvbnmqwertyuiop",
	"zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQ",
	"9876543210987654321098765432109876543210",
	"asdfghjkl;asdfghjkl;asdfghjkl;asdfghjkl;",
	"1234567890!@#$%^&*()1234567890!@#$%^&*()",
	"keyboard cat keyboard cat keyboard cat",
	"Password123!Password123!Password123!",
	"supersecretsessionsecretkey1234567",
	"my-app-session-secret-for-production",
	"Ch@ngeMe!Ch@ngeMe!Ch@ngeMe!Ch@ngeMe!",
	"admin123admin123admin123admin123",
	"Zk3vQ9pL2mX7rT1wYZk3vQ9pL2mX7rT1wY",
	"Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3",
	"abcdefgh12345678ABCDEFGH!@#$%^&*",
	"your-secret-here-your-secret-here",
	"this-is-my-very-long-session-secret-key",
	"correcthorsebatterystaplecorrecthorse",
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"changemechangemechangemechangeme",
	"passwordpasswordpasswordpassword",
	"abcabcabcabcabcabcabcabcabcabcabc",
	"deadbeefdeadbeefdeadbeefdeadbeef",
	"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
	"secret-secret-secret-secret-secret",
	"qwertyqwertyqwertyqwertyqwertyqwerty",
	"SmartScheduler-Session-Secret-2024!",
}

// TestWeakSecretsRefused: production refuses every weak secret, as
// SESSION_SECRET and as an entry of SESSION_SECRET_PREVIOUS alike, naming
// the variable and never the secret; development accepts them.
func TestWeakSecretsRefused(t *testing.T) {
	t.Parallel()
	if len(weakSecrets) < 24 {
		t.Fatalf("only %d weak secrets", len(weakSecrets))
	}
	for _, weak := range weakSecrets {
		if len(weak) < 32 {
			t.Fatalf("%q is shorter than 32 bytes: the table is for secrets that pass on length", weak)
		}
		for _, tc := range []struct {
			variable string
			env      map[string]string
		}{
			{"SESSION_SECRET", map[string]string{"SESSION_SECRET": weak}},
			{"SESSION_SECRET_PREVIOUS", map[string]string{"SESSION_SECRET": goodSecret, "SESSION_SECRET_PREVIOUS": randomSecret(t) + "," + weak}},
		} {
			env := map[string]string{"NODE_ENV": "production", "SESSION_ALLOW_MEMORY_STORE": "true"}
			maps.Copy(env, tc.env)
			_, err := session.ConfigFromLookup(lookupFrom(env))
			if got := problemVariables(err); !slices.Equal(got, []string{tc.variable}) {
				t.Errorf("%s=%q: problems with %v, want %s", tc.variable, weak, got, tc.variable)
				continue
			}
			if !strings.Contains(err.Error(), "predictable") || !strings.Contains(err.Error(), "128") {
				t.Errorf("%s=%q: error does not say it is predictable and what production needs: %v", tc.variable, weak, err)
			}
			if tc.variable == "SESSION_SECRET_PREVIOUS" && !strings.Contains(err.Error(), "entry 2") {
				t.Errorf("the error does not say which entry: %v", err)
			}
			if strings.Contains(err.Error(), weak) {
				t.Errorf("the error shows the secret: %v", err)
			}
			env["NODE_ENV"] = "development"
			if _, err := session.ConfigFromLookup(lookupFrom(env)); err != nil {
				t.Errorf("development refuses %s=%q: %v", tc.variable, weak, err)
			}
		}
	}
	// The placeholders and short secrets of before still fail, with their
	// own reasons, as previous secrets too.
	for secret, want := range map[string]string{"changeme": "is a placeholder", "keyboard cat": "is a placeholder", "k2#Lx9!mQz4w": "is 12 bytes"} {
		_, err := session.ConfigFromLookup(lookupFrom(map[string]string{"NODE_ENV": "production", "SESSION_ALLOW_MEMORY_STORE": "true",
			"SESSION_SECRET": goodSecret, "SESSION_SECRET_PREVIOUS": secret}))
		if !strings.Contains(fmt.Sprint(err), "SESSION_SECRET_PREVIOUS entry 1 "+want) {
			t.Errorf("previous secret %q: %v, want %q", secret, err, want)
		}
	}
}

// TestProductionCookiesCarryAPrefix is the review's item 11: a custom
// cookie name or a cookie domain dropped the __Host- prefix with no
// __Secure- in its place, prefixes were matched case-sensitively, and
// domains no browser accepts (an IP, a public suffix) were accepted.
func TestProductionCookiesCarryAPrefix(t *testing.T) {
	t.Parallel()
	names := []struct {
		production   bool
		name, domain string
		want         string
	}{
		{true, "", "", "__Host-session"},
		{true, "sid", "", "__Host-sid"},
		{true, "", "example.com", "__Secure-session"},
		{true, "sid", "app.example.com", "__Secure-sid"},
		{true, "__HOST-sid", "", "__Host-sid"},
		{true, "__secure-sid", "example.com", "__Secure-sid"},
		{true, "__Secure-sid", "", "__Secure-sid"},
		{false, "", "", "session"},
		{false, "sid", "example.com", "sid"},
	}
	for _, tt := range names {
		cfg := session.Config{Production: tt.production, AllowMemoryStore: true, Secret: goodSecret, CookieName: tt.name, CookieDomain: tt.domain}
		m, err := session.New(t.Context(), cfg, session.WithLogger(discardLogger))
		if err != nil {
			t.Errorf("%+v: %v", tt, err)
			continue
		}
		m.Close()
		ck := onlyCookie(serve(m.Handler(appHandler()), "/visit", ""))
		if ck == nil || ck.Name != tt.want {
			t.Errorf("production %v, name %q, domain %q: cookie %v, want the name %q", tt.production, tt.name, tt.domain, ck, tt.want)
		}
		if !strings.Contains(cfg.String(), "cookie_name="+tt.want) {
			t.Errorf("Config.String() = %s, want cookie_name=%s", cfg.String(), tt.want)
		}
	}

	prod := func(name, domain string) map[string]string {
		return map[string]string{"NODE_ENV": "production", "SESSION_ALLOW_MEMORY_STORE": "true", "SESSION_SECRET": goodSecret,
			"SESSION_COOKIE_NAME": name, "SESSION_COOKIE_DOMAIN": domain}
	}
	for _, tt := range []struct {
		env      map[string]string
		variable string
		says     string
	}{
		{prod("__HOST-sid", "example.com"), "SESSION_COOKIE_DOMAIN", "__Host-"},
		{prod("__host-sid", "example.com"), "SESSION_COOKIE_DOMAIN", "__Host-"},
		{map[string]string{"SESSION_COOKIE_NAME": "__secure-sid"}, "SESSION_COOKIE_NAME", "Secure"},
		{prod("", "com"), "SESSION_COOKIE_DOMAIN", "public suffix"},
		{prod("", "co.uk"), "SESSION_COOKIE_DOMAIN", "public suffix"},
		{prod("", ".com"), "SESSION_COOKIE_DOMAIN", "public suffix"},
		{prod("", "github.io"), "SESSION_COOKIE_DOMAIN", "public suffix"},
		{prod("", "localhost"), "SESSION_COOKIE_DOMAIN", "public suffix"},
		{prod("", "127.0.0.1"), "SESSION_COOKIE_DOMAIN", "IP address"},
		{prod("", "::1"), "SESSION_COOKIE_DOMAIN", "IP address"},
		{prod("", "[2001:db8::1]"), "SESSION_COOKIE_DOMAIN", "IP address"},
		{prod("", "example.com:443"), "SESSION_COOKIE_DOMAIN", "port"},
		{prod("", "..example.com"), "SESSION_COOKIE_DOMAIN", "empty label"},
		{prod("", "example..com"), "SESSION_COOKIE_DOMAIN", "empty label"},
		{prod("", "example.com."), "SESSION_COOKIE_DOMAIN", "empty label"},
		{prod("", "."), "SESSION_COOKIE_DOMAIN", "empty label"},
		{prod("", "exa mple.com"), "SESSION_COOKIE_DOMAIN", "not a host name"},
		{prod("", "bücher.example"), "SESSION_COOKIE_DOMAIN", "xn--"},
		{map[string]string{"SESSION_COOKIE_DOMAIN": "com"}, "SESSION_COOKIE_DOMAIN", "public suffix"},
	} {
		_, err := session.ConfigFromLookup(lookupFrom(tt.env))
		if got := problemVariables(err); !slices.Equal(got, []string{tt.variable}) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("name %q, domain %q: problems with %v (%v), want %s saying %q", tt.env["SESSION_COOKIE_NAME"], tt.env["SESSION_COOKIE_DOMAIN"], got, err, tt.variable, tt.says)
		}
	}
	// A leading dot means what browsers make of it: nothing.
	for _, domain := range []string{".example.com", "Example.COM", "app.example.co.uk"} {
		cfg, err := session.ConfigFromLookup(lookupFrom(prod("", domain)))
		if err != nil {
			t.Errorf("domain %q: %v", domain, err)
			continue
		}
		m, err := session.New(t.Context(), cfg, session.WithLogger(discardLogger))
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		ck := onlyCookie(serve(m.Handler(appHandler()), "/visit", ""))
		if want := strings.ToLower(strings.TrimPrefix(domain, ".")); ck == nil || ck.Domain != want || ck.Name != "__Secure-session" {
			t.Errorf("domain %q: cookie %v, want __Secure-session with Domain=%s", domain, ck, want)
		}
	}
}

// onlyCookie returns the one cookie a recorded response set, whatever its
// name, or nil.
func onlyCookie(rec *httptest.ResponseRecorder) *http.Cookie {
	if cookies := rec.Result().Cookies(); len(cookies) == 1 {
		return cookies[0]
	}
	return nil
}

// TestDefaultSizeCap is the review's item 8, configuration side: with no
// SESSION_MAX_SIZE a 100 MB value was stored and then loaded on every
// request. The zero MaxSize now means a 64 KiB cap; SESSION_MAX_SIZE=0
// (a negative MaxSize) turns the cap off.
func TestDefaultSizeCap(t *testing.T) {
	t.Parallel()
	const defaultCap = 64 << 10
	for _, tc := range []struct {
		name    string
		env     map[string]string
		maxSize int  // the Config field ConfigFromLookup fills
		capped  bool // whether a value just over the default cap is refused
	}{
		{"unset", map[string]string{}, 0, true},
		{"explicit", map[string]string{"SESSION_MAX_SIZE": "1048576"}, 1 << 20, false},
		{"off", map[string]string{"SESSION_MAX_SIZE": "0"}, -1, false},
	} {
		cfg, err := session.ConfigFromLookup(lookupFrom(tc.env))
		if err != nil || cfg.MaxSize != tc.maxSize {
			t.Errorf("%s: MaxSize %d, %v; want %d", tc.name, cfg.MaxSize, err, tc.maxSize)
			continue
		}
		cfg.Secret = goodSecret
		m, err := session.New(t.Context(), cfg, session.WithLogger(discardLogger))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		t.Cleanup(m.Close)
		var setErr error
		h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			setErr = session.FromContext(r.Context()).Set("big", strings.Repeat("x", defaultCap))
		}))
		serve(h, "/", "")
		if capped := errors.Is(setErr, session.ErrTooLarge); capped != tc.capped {
			t.Errorf("%s: Set of a %d-byte value = %v; want refused: %v", tc.name, defaultCap, setErr, tc.capped)
		}
		if !strings.Contains(cfg.String(), "max_size=") {
			t.Errorf("%s: String() %s does not show the cap", tc.name, cfg.String())
		}
	}
	if err := (session.Config{MaxSize: -1}).Validate(); err != nil {
		t.Errorf("a negative MaxSize, the cap turned off, is refused: %v", err)
	}
	if _, err := session.ConfigFromLookup(lookupFrom(map[string]string{"SESSION_MAX_SIZE": "-1"})); err == nil {
		t.Error("SESSION_MAX_SIZE=-1 accepted; 0 is how the variable turns the cap off")
	}
}
