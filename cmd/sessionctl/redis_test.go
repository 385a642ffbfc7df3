package main

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/redistest"
)

// redisEnv returns a production environment on a Redis server of the
// test's own, durable or not, which requires testPassword.
func redisEnv(t *testing.T, durable bool) map[string]string {
	t.Helper()
	server := redistest.NewServer(t, durable)
	if err := redistest.Client(t, server.URL()).ConfigSet(context.Background(), "requirepass", testPassword).Err(); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(server.URL() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("default", testPassword)
	return map[string]string{
		"NODE_ENV":       "production",
		"USE_REDIS":      "true",
		"REDIS_URL":      u.String(),
		"SESSION_SECRET": newSecret(),
	}
}

func TestCheckOnRedis(t *testing.T) {
	t.Parallel()
	t.Run("durable", func(t *testing.T) {
		t.Parallel()
		env := redisEnv(t, true)
		got, code := checkJSON(t, env)
		if code != exitOK {
			t.Errorf("exit status %d; want 0: %+v", code, got)
		}
		for _, name := range []string{"USE_REDIS", "REDIS_URL", "redis reachable", "redis version", "redis cluster", "redis eviction", "redis persistence", "SESSION_SECRET", "cookie"} {
			if got[name].Status != pass {
				t.Errorf("%s: %+v; want pass", name, got[name])
			}
		}
		for _, name := range []string{"USE_POSTGRES", "DATABASE_URL", "database reachable"} {
			if r, ok := got[name]; ok {
				t.Errorf("check on Redis reports %s: %+v", name, r)
			}
		}
	})
	t.Run("nothing on disk", func(t *testing.T) {
		t.Parallel()
		got, code := checkJSON(t, redisEnv(t, false))
		if r := got["redis persistence"]; r.Status != warn || !strings.Contains(r.Detail, "signs everyone out") {
			t.Errorf("persistence: %+v; want a warning that a restart signs everyone out", r)
		}
		if code != exitOK {
			t.Errorf("exit status %d; a warning is not a failure", code)
		}
	})
	t.Run("both stores", func(t *testing.T) {
		t.Parallel()
		env := redisEnv(t, true)
		env["USE_POSTGRES"], env["DATABASE_URL"] = "true", "postgres://app@db/app"
		got, code := checkJSON(t, env)
		if r := got["USE_REDIS"]; r.Status != fail || !strings.Contains(r.Detail, "USE_POSTGRES") {
			t.Errorf("USE_REDIS: %+v; want a failure naming USE_POSTGRES", r)
		}
		if code != exitFailed {
			t.Errorf("exit status %d; want 1", code)
		}
	})
}

func TestRedisCommands(t *testing.T) {
	t.Parallel()
	env := redisEnv(t, false)
	client := redistest.Client(t, env["REDIS_URL"])
	store, err := session.NewRedisStore(client, session.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, rec := range []session.Record{
		{UserID: "ada", Created: now, Expiry: now.Add(time.Hour)},
		{UserID: "ada", Created: now, Expiry: now.Add(time.Hour)},
		{Created: now, Expiry: now.Add(time.Hour)},
		{UserID: "grace", Created: now.Add(-2 * time.Hour), Expiry: now.Add(time.Hour), IdleExpiry: now.Add(-time.Hour)},
	} {
		if err := store.Insert(t.Context(), strings.Repeat(string(rune('a'+i)), 64), &rec); err != nil {
			t.Fatal(err)
		}
	}
	stats := func() (live, expired int64) {
		t.Helper()
		stdout, stderr, code := sessionctl(t, env, "stats", "--json")
		assertNoSecrets(t, env, stdout, stderr)
		var st struct{ Live, Expired int64 }
		if err := json.Unmarshal([]byte(stdout), &st); err != nil || code != exitOK {
			t.Fatalf("stats: exit %d, %v\n%s%s", code, err, stdout, stderr)
		}
		return st.Live, st.Expired
	}
	if live, expired := stats(); live != 3 || expired != 1 {
		t.Errorf("stats = %d live, %d expired; want 3, 1", live, expired)
	}
	stdout, stderr, code := sessionctl(t, env, "revoke", "--user", "ada")
	assertNoSecrets(t, env, stdout, stderr)
	if code != exitOK || !strings.Contains(stdout, `Revoked 2 session(s) of user "ada"`) {
		t.Errorf("revoke: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = sessionctl(t, env, "prune")
	if code != exitOK || !strings.Contains(stdout, "Pruned 1 expired session(s)") {
		t.Errorf("prune: exit %d\n%s%s", code, stdout, stderr)
	}
	if live, expired := stats(); live != 1 || expired != 0 {
		t.Errorf("stats after revoke and prune = %d live, %d expired; want 1, 0", live, expired)
	}

	env["REDIS_URL"] = "redis://default:" + testPassword + "@127.0.0.1:1/0"
	stdout, stderr, code = sessionctl(t, env, "stats", "--timeout", "2s")
	assertNoSecrets(t, env, stdout, stderr)
	if code != exitFailed || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Errorf("stats on a closed port: exit %d\n%s%s", code, stdout, stderr)
	}
}
