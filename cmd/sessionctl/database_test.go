package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/smartscheduler/session"
)

func TestDatabaseCommands(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	// A weak secret must not stop an operator from preparing the database.
	env["SESSION_SECRET"] = "changeme"

	stdout, _, code := sessionctl(t, env, "migrate", "--status")
	if code != exitFailed || !strings.Contains(stdout, "001_create_session") || !strings.Contains(stdout, "pending") {
		t.Errorf("status before migrating: exit %d\n%s", code, stdout)
	}
	stdout, stderr, code := sessionctl(t, env, "migrate")
	if code != exitOK || !strings.Contains(stdout, "Applied 001_create_session") {
		t.Fatalf("migrate: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, _, code = sessionctl(t, env, "migrate")
	if code != exitOK || !strings.Contains(stdout, "is up to date") {
		t.Errorf("second migrate: exit %d\n%s", code, stdout)
	}
	stdout, _, code = sessionctl(t, env, "migrate", "--status", "--json")
	var status struct {
		Migrations []migrationState `json:"migrations"`
		Pending    int              `json:"pending"`
	}
	if err := json.Unmarshal([]byte(stdout), &status); err != nil || code != exitOK || status.Pending != 0 || !status.Migrations[0].Applied {
		t.Errorf("status after migrating: exit %d, %v\n%s", code, err, stdout)
	}

	// Two sessions of ada, one anonymous, one expired.
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := session.NewPostgresStore(ctx, pool, session.PostgresOptions{Table: env["SESSION_TABLE"], ManualMigrations: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, rec := range []session.Record{
		{UserID: "ada", Created: now, Expiry: now.Add(time.Hour)},
		{UserID: "ada", Created: now, Expiry: now.Add(time.Hour)},
		{Created: now, Expiry: now.Add(time.Hour)},
		{UserID: "grace", Created: now.Add(-2 * time.Hour), Expiry: now.Add(-time.Hour)},
	} {
		if err := store.Insert(ctx, strings.Repeat(string(rune('a'+i)), 64), &rec); err != nil {
			t.Fatal(err)
		}
	}

	stdout, stderr, code = sessionctl(t, env, "stats", "--json")
	var stats struct {
		Live, WithUser, Expired, TableBytes int64
	}
	if err := json.Unmarshal([]byte(strings.ReplaceAll(stdout, "_", "")), &stats); err != nil || code != exitOK {
		t.Fatalf("stats --json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if stats.Live != 3 || stats.WithUser != 2 || stats.Expired != 1 || stats.TableBytes <= 0 {
		t.Errorf("stats = %+v, want 3 live, 2 with a user, 1 expired, a size", stats)
	}
	stdout, _, _ = sessionctl(t, env, "stats")
	for _, want := range []string{"live sessions  3", "with a user    2", "expired rows   1", "table size     "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stats lacks %q:\n%s", want, stdout)
		}
	}

	if stdout, _, code = sessionctl(t, env, "prune"); code != exitOK || !strings.Contains(stdout, "Pruned 1 expired session(s)") {
		t.Errorf("prune: exit %d: %s", code, stdout)
	}
	if stdout, _, code = sessionctl(t, env, "revoke", "--user", "ada"); code != exitOK || stdout != "Revoked 2 session(s) of user \"ada\".\n" {
		t.Errorf("revoke: exit %d: %q", code, stdout)
	}
	if stdout, _, code = sessionctl(t, env, "revoke", "--user", "ada"); code != exitOK || !strings.Contains(stdout, "Revoked 0") {
		t.Errorf("second revoke: exit %d: %q", code, stdout)
	}
}

func TestDatabaseCommandsNeedPostgres(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	missingTable := map[string]string{}
	for k, v := range env {
		missingTable[k] = v
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"memory store", map[string]string{"USE_POSTGRES": "false"}, "USE_POSTGRES is not true"},
		{"no DATABASE_URL", map[string]string{"USE_POSTGRES": "true"}, "DATABASE_URL is not set"},
		{"bad DATABASE_URL", map[string]string{"USE_POSTGRES": "true", "DATABASE_URL": "postgres://app:" + testPassword + "@db:notaport/app"}, "DATABASE_URL is not a valid"},
		{"table missing", missingTable, "sessionctl migrate"},
	}
	for _, tt := range tests {
		for _, args := range [][]string{{"prune"}, {"stats"}, {"revoke", "--user", "ada"}, {"migrate", "--status"}} {
			if tt.name == "table missing" && args[0] == "migrate" {
				continue
			}
			stdout, stderr, code := sessionctl(t, tt.env, args...)
			assertNoSecrets(t, tt.env, stdout, stderr)
			if code != exitFailed || !strings.Contains(stderr, tt.want) {
				t.Errorf("%s: %v: exit %d, stderr %q; want 1 and %q", tt.name, args, code, stderr, tt.want)
			}
		}
	}
}

// TestPruneSlowBatchesGoOn: a backlog whose batches each take longer than
// --timeout is pruned to the end in smaller batches, reported as a slow
// database, never as an outage. Before, the whole run was one --timeout
// and ended with "store unavailable: timeout" half-way through.
func TestPruneSlowBatchesGoOn(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	if _, stderr, code := sessionctl(t, env, "migrate"); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	pool, err := pgxpool.New(t.Context(), env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	table := env["SESSION_TABLE"]
	schema, _, _ := strings.Cut(table, ".")
	const expired = 600
	for _, sql := range []string{
		"INSERT INTO " + table + " (id, data, persistent, created_at, expires_at) SELECT 'expired-' || i, '{}', true, now() - interval '2 hours', now() - interval '1 hour' FROM generate_series(1, 600) i",
		"INSERT INTO " + table + " (id, data, persistent, created_at, expires_at) VALUES ('live', '{}', true, now(), now() + interval '1 hour')",
		// Every deleted row costs 2ms: a batch of 1000 takes 2s, of 125
		// a quarter of a second.
		"CREATE FUNCTION " + schema + ".slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.002); RETURN OLD; END $$",
		"CREATE TRIGGER slow_delete BEFORE DELETE ON " + table + " FOR EACH ROW EXECUTE FUNCTION " + schema + ".slow_delete()",
	} {
		if _, err := pool.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	stdout, stderr, code := sessionctl(t, env, "prune", "--timeout", "700ms")
	if code != exitOK || !strings.Contains(stdout, fmt.Sprintf("Pruned %d expired session(s)", expired)) {
		t.Fatalf("prune: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "slowly") || strings.Contains(stderr+stdout, "unavailable") {
		t.Errorf("prune of slow batches reported:\n%s%s\nwant them called slow, not an outage", stdout, stderr)
	}
	var left int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&left); err != nil || left != 1 {
		t.Errorf("%d rows left (%v); want only the live one", left, err)
	}
}

// TestStatsShowsHowTheTableHoldsUp: stats reports the table's and its
// indexes' sizes, dead rows, the share of HOT updates and the fillfactor,
// so an operator sees bloat coming.
func TestStatsShowsHowTheTableHoldsUp(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	if _, stderr, code := sessionctl(t, env, "migrate"); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	pool, err := pgxpool.New(t.Context(), env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := session.NewPostgresStore(t.Context(), pool, session.PostgresOptions{Table: env["SESSION_TABLE"]})
	if err != nil {
		t.Fatal(err)
	}
	rec := &session.Record{Created: time.Now(), Expiry: time.Now().Add(time.Hour)}
	if err := store.Insert(t.Context(), "k", rec); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		change := session.Change{Set: map[string]json.RawMessage{"n": json.RawMessage(fmt.Sprint(i))}}
		if _, err := store.Apply(t.Context(), "k", change); err != nil {
			t.Fatal(err)
		}
	}
	// A backend publishes its statistics when it exits (an idle one only
	// every 10 s): close the pool that made the updates.
	pool.Close()
	var st stats
	deadline := time.Now().Add(10 * time.Second)
	for st.Updates < 10 && time.Now().Before(deadline) {
		stdout, stderr, code := sessionctl(t, env, "stats", "--json")
		if code != exitOK || json.Unmarshal([]byte(stdout), &st) != nil {
			t.Fatalf("stats --json: exit %d\n%s%s", code, stdout, stderr)
		}
		time.Sleep(50 * time.Millisecond) // polling the server's statistics, which it publishes a moment after each transaction
	}
	if st.Updates < 10 || st.HOTUpdates != st.Updates || st.HeapBytes <= 0 || st.IndexBytes <= 0 || st.Fillfactor != 100 {
		t.Errorf("stats = %+v; want the 10 updates, all HOT, the sizes and the fillfactor", st)
	}
	stdout, _, _ := sessionctl(t, env, "stats")
	for _, want := range []string{"HOT updates    100.0% of", "dead rows", "fillfactor     100", "indexes"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stats lacks %q:\n%s", want, stdout)
		}
	}
}
