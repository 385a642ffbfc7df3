package main

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/smartscheduler/session/internal/pgtest"
	"github.com/smartscheduler/session/internal/redistest"
)

func TestMain(m *testing.M) { pgtest.Main(redistest.Wrap(m)) }

// sessionctl runs the command with env as its whole environment.
func sessionctl(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	lookup := func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	code = run(context.Background(), args, lookup, &out, &errOut)
	return out.String(), errOut.String(), code
}

// testPassword is put in DATABASE_URL to prove no output ever shows it; the
// test server trusts local connections, so it is never checked.
const testPassword = "hunter2-do-not-print"

// productionEnv returns a complete production environment using a fresh
// schema of the test server.
func productionEnv(t *testing.T) map[string]string {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), testPassword)
	return map[string]string{
		"NODE_ENV":       "production",
		"USE_POSTGRES":   "true",
		"DATABASE_URL":   u.String(),
		"SESSION_SECRET": newSecret(),
		"SESSION_TABLE":  pgtest.Schema(t),
		// Production without an idle timeout is a warning.
		"SESSION_IDLE_TIMEOUT": "30m",
	}
}

// assertNoSecrets fails if output holds the secret or the password.
func assertNoSecrets(t *testing.T, env map[string]string, outputs ...string) {
	t.Helper()
	for _, out := range outputs {
		if strings.Contains(out, testPassword) {
			t.Errorf("output shows the database password:\n%s", out)
		}
		for _, name := range []string{"SESSION_SECRET", "SESSION_SECRET_PREVIOUS"} {
			for s := range strings.SplitSeq(env[name], ",") {
				if len(s) >= 8 && strings.Contains(out, s) {
					t.Errorf("output shows %s:\n%s", name, out)
				}
			}
		}
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	type usageTest struct {
		args       []string
		code       int
		stdout     string // substring expected on stdout
		stderr     string // substring expected on stderr
		quietError bool   // nothing on stderr
	}
	tests := []usageTest{
		{args: nil, code: exitUsage, stderr: "Usage: sessionctl <command>"},
		{args: []string{"--help"}, code: exitOK, stdout: "Usage: sessionctl <command>", quietError: true},
		{args: []string{"help"}, code: exitOK, stdout: "revoke", quietError: true},
		{args: []string{"help", "check"}, code: exitOK, stdout: "Usage: sessionctl check", quietError: true},
		{args: []string{"frobnicate"}, code: exitUsage, stderr: `unknown command "frobnicate"`},
		{args: []string{"check", "--nope"}, code: exitUsage, stderr: "flag provided but not defined: -nope"},
		{args: []string{"prune", "extra"}, code: exitUsage, stderr: `unexpected argument "extra"`},
		{args: []string{"secret", "--rotate"}, code: exitUsage, stderr: "--rotate needs --env-file"},
		{args: []string{"secret", "--stage"}, code: exitUsage, stderr: "--stage needs --env-file"},
		{args: []string{"secret", "--promote"}, code: exitUsage, stderr: "--promote needs --env-file"},
		{args: []string{"secret", "--stage", "--promote", "--env-file", "x"}, code: exitUsage, stderr: "use one"},
		{args: []string{"revoke"}, code: exitUsage, stderr: "--user is required"},
		{args: []string{"migrate", "--json"}, code: exitUsage, stderr: "--json goes with --status"},
		{args: []string{"stats", "--timeout", "soon"}, code: exitUsage, stderr: "invalid value"},
	}
	for _, c := range commands {
		tests = append(tests, usageTest{args: []string{c.name, "--help"}, code: exitOK, stdout: "Usage: sessionctl " + c.name, quietError: true})
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := sessionctl(t, nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr)
			}
			if tt.quietError && stderr != "" {
				t.Errorf("stderr should be empty:\n%s", stderr)
			}
		})
	}
}
