package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smartscheduler/session/internal/pgtest"
)

// checkJSON runs "check --json" and returns the results by check name
// (the last one where a check reports several).
func checkJSON(t *testing.T, env map[string]string, args ...string) (map[string]result, int) {
	t.Helper()
	stdout, stderr, code := sessionctl(t, env, append([]string{"check", "--json"}, args...)...)
	assertNoSecrets(t, env, stdout, stderr)
	var results []result
	if err := json.Unmarshal([]byte(stdout), &results); err != nil {
		t.Fatalf("check --json printed invalid JSON (%v):\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	byName := map[string]result{}
	for _, r := range results {
		byName[r.Check] = r
	}
	return byName, code
}

func TestCheckPassesAProductionConfiguration(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	env["SESSION_SECRET_PREVIOUS"] = newSecret()
	if _, stderr, code := sessionctl(t, env, "migrate"); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	stdout, stderr, code := sessionctl(t, env, "check")
	assertNoSecrets(t, env, stdout, stderr)
	if code != exitOK || strings.Contains(stdout, "FAIL") || strings.Contains(stdout, "WARN") {
		t.Fatalf("exit status %d:\n%s%s", code, stdout, stderr)
	}
	for _, line := range []string{
		`PASS  production mode     production (NODE_ENV="production")`,
		"PASS  USE_POSTGRES        true",
		"PASS  DATABASE_URL        127.0.0.1:",
		"PASS  database reachable  127.0.0.1:",
		"PASS  session table       \"t_",
		"PASS  database clock      within 2s",
		"PASS  SESSION_SECRET      set, 43 bytes",
		"PASS  previous secrets    1 retired secret(s), each as strong",
		"PASS  cookie              name=__Host-session Secure HttpOnly SameSite=Lax",
		"PASS  idle timeout        SESSION_IDLE_TIMEOUT=30m0s",
		"PASS  size cap            65536 bytes (the default)",
	} {
		if !strings.Contains(stdout, "\n"+line) && !strings.HasPrefix(stdout, line) {
			t.Errorf("output lacks the line %q:\n%s", line, stdout)
		}
	}
	// The review's item 17: production over plain HTTP loses the Secure
	// cookie on every page; the cookie line says how to see it.
	for _, want := range []string{"only over HTTPS", "curl -s -o /dev/null -D - https://", "| grep -i set-cookie", "X-Forwarded-Proto: https"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the cookie line does not say %q:\n%s", want, stdout)
		}
	}
	if want := "fingerprint " + fingerprint(env["SESSION_SECRET"]); !strings.Contains(stdout, want) {
		t.Errorf("output lacks the secret's %s:\n%s", want, stdout)
	}
	if fingerprint(env["SESSION_SECRET"]) == fingerprint(newSecret()) {
		t.Error("two secrets share a fingerprint")
	}
	results, _ := checkJSON(t, env)
	if len(results) != 11 {
		t.Errorf("--json gave %d checks, want the 11 of the text output: %v", len(results), results)
	}
}

func TestCheckFailures(t *testing.T) {
	t.Parallel()
	closedPort := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return fmt.Sprintf("postgres://app:%s@%s/app?sslmode=disable", testPassword, addr)
	}
	tests := []struct {
		name string
		edit func(t *testing.T, env map[string]string)
		// want maps check names to the status and fragments of detail+fix
		// expected.
		want map[string][]string
	}{
		{
			name: "development settings",
			edit: func(t *testing.T, env map[string]string) {
				delete(env, "NODE_ENV")
				env["USE_POSTGRES"] = "false"
				env["SESSION_SECRET"] = "short-but-random-ish"
			},
			want: map[string][]string{
				"production mode": {"fail", "NODE_ENV is not set", "set NODE_ENV=production"},
				"USE_POSTGRES":    {"fail", "is not true", "set USE_POSTGRES=true"},
				"SESSION_SECRET":  {"fail", "is 20 bytes; production needs at least 32", `run "sessionctl secret"`},
				"cookie":          {"fail", "name=session HttpOnly", "not Secure"},
			},
		},
		{
			name: "NODE_ENV with a typo runs production checks",
			edit: func(t *testing.T, env map[string]string) { env["NODE_ENV"] = "prod" },
			want: map[string][]string{
				"production mode": {"warn", `production (NODE_ENV="prod" is not development, dev, test or local)`, "set NODE_ENV=production exactly"},
			},
		},
		{
			name: "NODE_ENV with an invisible character",
			edit: func(t *testing.T, env map[string]string) { env["NODE_ENV"] = "development\u200b" },
			want: map[string][]string{
				"production mode": {"warn", `NODE_ENV="development\u200b"`},
			},
		},
		{
			name: "NODE_ENV and APP_ENV disagree",
			edit: func(t *testing.T, env map[string]string) { env["APP_ENV"] = "development" },
			want: map[string][]string{
				"production mode": {"fail", `NODE_ENV is "production" but APP_ENV is "development"`, "set both to the same mode"},
			},
		},
		{
			name: "APP_ENV says development",
			edit: func(t *testing.T, env map[string]string) {
				delete(env, "NODE_ENV")
				env["APP_ENV"] = "local"
			},
			want: map[string][]string{
				"production mode": {"fail", `development (APP_ENV="local")`, "set NODE_ENV=production"},
			},
		},
		{
			name: "a custom cookie name gets the prefix",
			edit: func(t *testing.T, env map[string]string) { env["SESSION_COOKIE_NAME"] = "sid" },
			want: map[string][]string{
				"cookie": {"pass", "name=__Host-sid Secure", "SESSION_COOKIE_NAME=sid", "the __Host- prefix browsers enforce"},
			},
		},
		{
			name: "a cookie domain gets __Secure-",
			edit: func(t *testing.T, env map[string]string) { env["SESSION_COOKIE_DOMAIN"] = ".Example.com" },
			want: map[string][]string{
				"cookie": {"pass", "name=__Secure-session Secure", "Domain=example.com", "the __Secure- prefix browsers enforce"},
			},
		},
		{
			name: "__Host- in any case refuses a domain",
			edit: func(t *testing.T, env map[string]string) {
				env["SESSION_COOKIE_NAME"] = "__HOST-sid"
				env["SESSION_COOKIE_DOMAIN"] = "example.com"
			},
			want: map[string][]string{
				"cookie": {"fail", "starts with __Host-", "unset SESSION_COOKIE_DOMAIN"},
			},
		},
		{
			name: "a public suffix as the cookie domain",
			edit: func(t *testing.T, env map[string]string) { env["SESSION_COOKIE_DOMAIN"] = "co.uk" },
			want: map[string][]string{
				"cookie": {"fail", "public suffix"},
			},
		},
		{
			name: "no idle timeout, no size cap",
			edit: func(t *testing.T, env map[string]string) {
				delete(env, "SESSION_IDLE_TIMEOUT")
				env["SESSION_MAX_SIZE"] = "0"
			},
			want: map[string][]string{
				"idle timeout": {"warn", "SESSION_IDLE_TIMEOUT is not set", "set SESSION_IDLE_TIMEOUT"},
				"size cap":     {"warn", "SESSION_MAX_SIZE=0", "unset SESSION_MAX_SIZE"},
			},
		},
		{
			name: "placeholder secret, weak retired secret",
			edit: func(t *testing.T, env map[string]string) {
				env["SESSION_SECRET"] = "<random-secure-string>"
				env["SESSION_SECRET_PREVIOUS"] = "keyboard cat"
			},
			want: map[string][]string{
				"SESSION_SECRET":   {"fail", "placeholder"},
				"previous secrets": {"fail", "entry 1 is a placeholder", "remove it"},
			},
		},
		{
			name: "missing table",
			edit: func(t *testing.T, env map[string]string) {},
			want: map[string][]string{
				"session table":      {"fail", "does not exist", `run "sessionctl migrate"`},
				"database reachable": {"pass", "answered in"},
			},
		},
		{
			name: "unreachable database",
			edit: func(t *testing.T, env map[string]string) { env["DATABASE_URL"] = closedPort(t) },
			want: map[string][]string{
				"DATABASE_URL":       {"pass", "127.0.0.1:"},
				"database reachable": {"fail", "cannot connect to PostgreSQL at 127.0.0.1:", "check the host and port in DATABASE_URL"},
				"session table":      {"skip"},
				"database clock":     {"skip"},
			},
		},
		{
			name: "no DATABASE_URL",
			edit: func(t *testing.T, env map[string]string) { delete(env, "DATABASE_URL") },
			want: map[string][]string{
				"DATABASE_URL":       {"fail", "is not set", "postgres://user:password@host:5432/database"},
				"database reachable": {"skip"},
			},
		},
		{
			name: "PgBouncer without exec mode",
			edit: func(t *testing.T, env map[string]string) {
				env["DATABASE_URL"] = fmt.Sprintf("postgres://app:%s@127.0.0.1:6432/app?connect_timeout=1", testPassword)
			},
			want: map[string][]string{
				"DATABASE_URL": {"warn", "PgBouncer", "default_query_exec_mode=exec"},
			},
		},
		{
			name: "memory store accepted",
			edit: func(t *testing.T, env map[string]string) {
				env["USE_POSTGRES"] = "false"
				env["SESSION_ALLOW_MEMORY_STORE"] = "true"
				delete(env, "DATABASE_URL")
			},
			want: map[string][]string{
				"USE_POSTGRES":       {"warn", "every restart signs everyone out"},
				"DATABASE_URL":       {"skip"},
				"database reachable": {"skip"},
			},
		},
		{
			name: "unparsable settings",
			edit: func(t *testing.T, env map[string]string) {
				env["SESSION_LIFETIME"] = "two weeks"
				env["SESSION_SAMESITE"] = "sometimes"
			},
			want: map[string][]string{
				"SESSION_LIFETIME": {"fail", `is "two weeks", not a positive duration`},
				"cookie":           {"fail", "SESSION_SAMESITE", "lax, strict or none"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := productionEnv(t)
			tt.edit(t, env)
			results, code := checkJSON(t, env, "--timeout", "3s")
			if code != exitFailed && slicesHaveFail(tt.want) {
				t.Errorf("exit status %d, want %d", code, exitFailed)
			}
			for name, want := range tt.want {
				r, ok := results[name]
				if !ok {
					t.Errorf("no %q check in %v", name, results)
					continue
				}
				if string(r.Status) != want[0] {
					t.Errorf("%s: status %s, want %s (%s: %s)", name, r.Status, want[0], r.Detail, r.Fix)
				}
				for _, fragment := range want[1:] {
					if !strings.Contains(r.Detail+": "+r.Fix, fragment) {
						t.Errorf("%s: %q lacks %q", name, r.Detail+": "+r.Fix, fragment)
					}
				}
			}
		})
	}
}

func slicesHaveFail(want map[string][]string) bool {
	for v := range maps.Values(want) {
		if v[0] == "fail" {
			return true
		}
	}
	return false
}

func TestCheckReadsTheEnvFile(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	if _, stderr, code := sessionctl(t, env, "migrate"); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	path := filepath.Join(t.TempDir(), ".env")
	var file strings.Builder
	for _, k := range []string{"NODE_ENV", "USE_POSTGRES", "SESSION_SECRET"} {
		fmt.Fprintf(&file, "%s=%s\n", k, env[k])
		delete(env, k)
	}
	// The environment wins over the file, as it does for the app.
	file.WriteString("SESSION_TABLE=nonexistent.session\n")
	os.WriteFile(path, []byte(file.String()), 0o600)

	results, code := checkJSON(t, env, "--env-file", path)
	if code != exitOK {
		t.Errorf("exit status %d: %v", code, results)
	}
	if r := results["SESSION_SECRET"]; !strings.Contains(r.Detail, "(from "+path+")") {
		t.Errorf("SESSION_SECRET detail %q does not say it came from the file", r.Detail)
	}
	if r := results["DATABASE_URL"]; !strings.Contains(r.Detail, "(from the environment)") {
		t.Errorf("DATABASE_URL detail %q does not say it came from the environment", r.Detail)
	}

	_, stderr, code := sessionctl(t, env, "check", "--env-file", filepath.Join(t.TempDir(), "missing.env"))
	if code != exitFailed || !strings.Contains(stderr, "does not exist") {
		t.Errorf("a missing env file: exit %d, %q", code, stderr)
	}
}

func TestClockResult(t *testing.T) {
	t.Parallel()
	local := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		skew   time.Duration
		status status
		detail string
	}{
		{0, pass, "within 2s"},
		{1900 * time.Millisecond, pass, "within 2s"},
		{-1900 * time.Millisecond, pass, "within 2s"},
		{2500 * time.Millisecond, warn, "is 2.5s ahead of this machine's"},
		{-90 * time.Second, warn, "is 1m30s behind this machine's"},
	}
	for _, tt := range tests {
		r := clockResult(local.Add(tt.skew), local)
		if r.Status != tt.status || !strings.Contains(r.Detail, tt.detail) {
			t.Errorf("skew %v: %s %q, want %s %q", tt.skew, r.Status, r.Detail, tt.status, tt.detail)
		}
		if r.Status == warn && !strings.Contains(r.Fix, "NTP") {
			t.Errorf("skew %v: fix %q does not say how", tt.skew, r.Fix)
		}
	}
}

// TestCheckNeverShowsAPastedPassword: a password pasted with an unencoded
// '@' and '#' (the review's item 13) shows in no output, not even the part
// after its first '@', which pgx would take for the host.
func TestCheckNeverShowsAPastedPassword(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	env["DATABASE_URL"] = "postgres://app:Secr3t@Pr0d#2024@127.0.0.1:5432/app?sslmode=disable"
	var outputs []string
	for _, args := range [][]string{{"check"}, {"check", "--json"}, {"migrate"}, {"stats"}} {
		stdout, stderr, _ := sessionctl(t, env, args...)
		outputs = append(outputs, stdout+stderr)
	}
	for _, out := range outputs {
		for _, fragment := range []string{"Secr3t", "Pr0d", "2024"} {
			if strings.Contains(out, fragment) {
				t.Errorf("output shows %q of the password:\n%s", fragment, out)
			}
		}
	}
	results, code := checkJSON(t, env)
	if r := results["DATABASE_URL"]; code != exitFailed || r.Status != fail || !strings.Contains(r.Detail+r.Fix, "%40") {
		t.Errorf("exit %d, DATABASE_URL %s %q; want a failure saying to encode '@' as %%40", code, r.Status, r.Detail+": "+r.Fix)
	}
}

// TestCheckTestsTheRoleBeforeSuggestingAutoMigrate is the review's item
// 18: check suggested SESSION_AUTO_MIGRATE=true to a role that may not
// create the table. It now asks the database what the role may do.
func TestCheckTestsTheRoleBeforeSuggestingAutoMigrate(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	schema, _, _ := strings.Cut(env["SESSION_TABLE"], ".")
	role, roleURL := pgtest.Role(t)
	pgtest.Exec(t, "GRANT USAGE ON SCHEMA "+schema+" TO "+role)
	env["DATABASE_URL"] = roleURL
	results, _ := checkJSON(t, env)
	r := results["session table"]
	for _, want := range []string{"does not exist", `lacks the CREATE privilege on schema "` + schema + `"`, "GRANT CREATE ON SCHEMA", "sessionctl migrate", "SESSION_AUTO_MIGRATE=false"} {
		if !strings.Contains(r.Detail+": "+r.Fix, want) {
			t.Errorf("session table: %q lacks %q", r.Detail+": "+r.Fix, want)
		}
	}
	if r.Status != fail || strings.Contains(r.Fix, "SESSION_AUTO_MIGRATE=true") {
		t.Errorf("session table: %s %q; want a failure that does not suggest auto-migration", r.Status, r.Fix)
	}
	// sessionctl migrate as that role says the same.
	if _, stderr, code := sessionctl(t, env, "migrate"); code != exitFailed || !strings.Contains(stderr, "GRANT CREATE ON SCHEMA") {
		t.Errorf("migrate as the role: exit %d, %s", code, stderr)
	}
	// The administrator may: auto-migration is a fix then.
	results, _ = checkJSON(t, productionEnv(t))
	if r := results["session table"]; !strings.Contains(r.Fix, "SESSION_AUTO_MIGRATE=true") {
		t.Errorf("session table for a role that may create it: fix %q", r.Fix)
	}
}

// TestCheckReportsTheConnectionCause is the review's item 19 for check:
// the "database reachable" line leads with the cause, once, and the fix
// that fits it, against a server that asks for passwords and refuses TLS.
func TestCheckReportsTheConnectionCause(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	cluster.RequirePasswords(t, "app", testPassword)
	server := pgtest.Config(t, cluster.URL()).ConnConfig
	at := fmt.Sprintf("%s:%d", server.Host, server.Port)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, tc := range []struct{ name, url, cause, fix string }{
		{"closed port", "postgres://app:" + testPassword + "@" + closed + "/postgres", "connection refused", "check the host and port"},
		{"wrong password", "postgres://app:wrong-" + testPassword + "@" + at + "/postgres", "password authentication failed", "check the user name and password"},
		{"no such database", "postgres://app:" + testPassword + "@" + at + "/no_such_db", `database "no_such_db" does not exist`, "create the database"},
	} {
		env := productionEnv(t)
		env["DATABASE_URL"] = tc.url
		results, _ := checkJSON(t, env, "--timeout", "5s")
		r := results["database reachable"]
		line := r.Detail + ": " + r.Fix
		if r.Status != fail || strings.Count(line, tc.cause) != 1 || strings.Contains(line, "server refused TLS connection") || !strings.Contains(r.Fix, tc.fix) {
			t.Errorf("%s: %s %q; want a failure naming %q once, not the TLS refusal, and the fix %q", tc.name, r.Status, line, tc.cause, tc.fix)
		}
		if strings.Contains(line, "wrong-") {
			t.Errorf("%s: the line shows the password: %s", tc.name, line)
		}
	}
}
