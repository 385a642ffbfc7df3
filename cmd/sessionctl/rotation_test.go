package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/smartscheduler/session"
)

// TestRollingRotation is the review's item 16: rotating the secret during
// a rolling deploy must sign nobody out. A browser (one cookie jar)
// alternates between two app instances, configured from the env file as
// an instance not yet redeployed ("old") and one already redeployed
// ("new") would be at each step of `sessionctl secret --stage`, a deploy,
// `--promote` and a second deploy. Its visit counter must only go up.
//
// The same walk with the one-step --rotate shows why that flag is for a
// single instance: the first request that moves from a new instance to an
// old one starts a new session.
func TestRollingRotation(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	if _, stderr, code := sessionctl(t, env, "migrate"); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	var file strings.Builder
	for _, k := range []string{"NODE_ENV", "USE_POSTGRES", "DATABASE_URL", "SESSION_TABLE", "SESSION_SECRET", "SESSION_IDLE_TIMEOUT"} {
		fmt.Fprintf(&file, "%s=%s\n", k, env[k])
	}
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// snapshot keeps the file as it is now: the configuration of an
	// instance deployed at this point.
	snapshot := func(name string) string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) {
		t.Helper()
		stdout, stderr, code := sessionctl(t, nil, append([]string{"secret", "--env-file", path}, args...)...)
		if code != exitOK {
			t.Fatalf("sessionctl secret %v: exit %d: %s", args, code, stderr)
		}
		assertNoSecrets(t, map[string]string{"SESSION_SECRET_PREVIOUS": envFileValue(t, path, "SESSION_SECRET_PREVIOUS"),
			"SESSION_SECRET": envFileValue(t, path, "SESSION_SECRET")}, stdout, stderr)
	}

	before := snapshot("before.env")
	run("--stage")
	staged := snapshot("staged.env")
	if r := mustCheck(t, staged)["previous secrets"]; r.Status != pass || !strings.Contains(r.Detail, "the first is staged") || !strings.Contains(r.Fix, "--promote") {
		t.Errorf("check on the staged file: previous secrets %s %q: %q; want it to say the first is staged and how to promote it", r.Status, r.Detail, r.Fix)
	}
	if envFileValue(t, staged, "SESSION_SECRET") != envFileValue(t, before, "SESSION_SECRET") {
		t.Fatal("--stage changed SESSION_SECRET: every instance must keep signing with the old secret")
	}
	run("--promote")
	promoted := snapshot("promoted.env")
	if got, want := envFileValue(t, promoted, "SESSION_SECRET_PREVIOUS"), envFileValue(t, before, "SESSION_SECRET"); got != want {
		t.Errorf("after --promote SESSION_SECRET_PREVIOUS is not the old secret alone")
	}
	if _, stderr, code := sessionctl(t, nil, "secret", "--env-file", path, "--promote"); code != exitFailed || !strings.Contains(stderr, "no staged secret") {
		t.Errorf("a second --promote: exit %d, %q; want a refusal, since it would make the retired secret sign again", code, stderr)
	}

	b := newBrowser(t)
	steps := []struct{ name, old, new string }{
		{"before the rotation", before, before},
		{"deploying the staged secret", before, staged},
		{"staged everywhere", staged, staged},
		{"deploying the promotion", staged, promoted},
		{"promoted everywhere", promoted, promoted},
	}
	for _, step := range steps {
		old, updated := startInstance(t, step.old), startInstance(t, step.new)
		for range 3 {
			b.visit(t, step.name+", old instance", old)
			b.visit(t, step.name+", new instance", updated)
		}
	}

	// The one-step rotation, rolled out the same way, signs the browser out.
	if err := os.WriteFile(path, mustRead(t, before), 0o600); err != nil {
		t.Fatal(err)
	}
	run("--rotate")
	rotated := snapshot("rotated.env")
	old, updated := startInstance(t, before), startInstance(t, rotated)
	one := newBrowser(t)
	one.visit(t, "before --rotate", old)
	one.visit(t, "--rotate, new instance", updated)
	if n := one.get(t, old); n != 1 {
		t.Errorf("a browser moving from a --rotate'd instance to an old one kept its session (visit %d); the test no longer shows why --rotate is for one instance", n)
	}
}

// instance is one app instance, configured from an env file.
type instance struct{ url string }

// startInstance starts an app instance configured from the env file at
// path alone, on the PostgreSQL table every instance shares.
func startInstance(t *testing.T, path string) instance {
	t.Helper()
	f, err := readEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := session.ConfigFromLookup(f.lookup)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	m, err := session.New(t.Context(), cfg, session.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv := httptest.NewTLSServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := session.Update(session.FromContext(r.Context()), "visits", func(n int, _ bool) (int, error) { return n + 1, nil })
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	})))
	t.Cleanup(srv.Close)
	return instance{url: srv.URL}
}

// browser is one cookie jar, shared by every instance: they all listen on
// 127.0.0.1, and cookies do not depend on the port.
type browser struct {
	client *http.Client
	visits int
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every httptest TLS server has the same certificate, so one server's
	// client trusts them all.
	tls := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tls.Close)
	return &browser{client: &http.Client{Transport: tls.Client().Transport, Jar: jar}}
}

// get requests in and returns its visit count.
func (b *browser) get(t *testing.T, in instance) int {
	t.Helper()
	resp, err := b.client.Get(in.url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	n, err := strconv.Atoi(string(body))
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("GET %s: %d %s", in.url, resp.StatusCode, body)
	}
	return n
}

// visit requests in and fails the test unless the session survived: the
// count goes on from the browser's last visit.
func (b *browser) visit(t *testing.T, when string, in instance) {
	t.Helper()
	n := b.get(t, in)
	if n != b.visits+1 {
		t.Fatalf("%s: visit %d, want %d: the browser was signed out", when, n, b.visits+1)
	}
	b.visits = n
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mustCheck runs "sessionctl check --json --env-file path" and returns its
// results by check name.
func mustCheck(t *testing.T, path string) map[string]result {
	t.Helper()
	results, _ := checkJSON(t, nil, "--env-file", path)
	return results
}
