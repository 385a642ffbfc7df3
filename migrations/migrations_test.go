package migrations_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/smartscheduler/session/internal/pgtest"
	"github.com/smartscheduler/session/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestParseTable(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		in      string
		want    string // quoted; "" when rejected
		wantErr string
	}{
		{in: "session", want: `"session"`},
		{in: "app.session", want: `"app"."session"`},
		{in: "Mixed.Case", want: `"Mixed"."Case"`},
		{in: `a"b`, want: `"a""b"`},
		{in: "x; DROP TABLE y", want: `"x; DROP TABLE y"`},
		{in: long, want: `"` + long + `"`},
		{in: "", wantErr: "empty part"},
		{in: ".session", wantErr: "empty part"},
		{in: "app.", wantErr: "empty part"},
		{in: "a.b.c", wantErr: "3 dot-separated parts"},
		{in: "a\x00b", wantErr: "NUL"},
		{in: "a\xffb", wantErr: "UTF-8"},
		{in: long + "a", wantErr: "at most 63"},
	} {
		got, err := migrations.ParseTable(tc.in)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseTable(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseTable(%q): %v", tc.in, err)
		case tc.wantErr == "" && got.String() != tc.want:
			t.Errorf("ParseTable(%q) = %s; want %s", tc.in, got, tc.want)
		}
	}
}

func TestSiblingNamesFitAndStayUnique(t *testing.T) {
	t.Parallel()
	a := migrations.Table{Schema: "s", Name: strings.Repeat("a", 63)}
	b := migrations.Table{Schema: "s", Name: strings.Repeat("a", 62) + "b"}
	for _, tb := range []migrations.Table{a, b} {
		name := strings.TrimPrefix(tb.MigrationsTable(), `"s".`)
		if n := len(name) - 2; n > 63 {
			t.Errorf("MigrationsTable() of a 63-byte table is %d bytes; PostgreSQL keeps 63", n)
		}
		if !strings.HasSuffix(name, `_migrations"`) {
			t.Errorf("MigrationsTable() = %s; want it to end in _migrations", name)
		}
	}
	if a.MigrationsTable() == b.MigrationsTable() {
		t.Errorf("two long table names share the migrations table %s", a.MigrationsTable())
	}
	short := migrations.Table{Schema: "s", Name: "session"}
	if got := short.MigrationsTable(); got != `"s"."session_migrations"` {
		t.Errorf("MigrationsTable() = %s; want \"s\".\"session_migrations\"", got)
	}
}

func TestEmbeddedMigrationsRender(t *testing.T) {
	t.Parallel()
	all := migrations.All()
	if len(all) == 0 {
		t.Fatal("no migrations embedded")
	}
	tb := migrations.Table{Schema: "app", Name: `we"ird`}
	for i, m := range all {
		if m.Version != i+1 {
			t.Errorf("migration %d is numbered %d; want consecutive numbers from 1", i, m.Version)
		}
		sql := m.SQL(tb)
		if strings.Contains(sql, "{{") || !strings.Contains(sql, `"app"."we""ird"`) {
			t.Errorf("migration %03d_%s renders badly:\n%s", m.Version, m.Name, sql)
		}
	}
}

// TestApplyConcurrently starts eight processes' worth of migrators at once,
// each with its own pool, on an empty schema.
func TestApplyConcurrently(t *testing.T) {
	t.Parallel()
	table, err := migrations.ParseTable(pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	const migrators = 8
	ctx := t.Context()
	pools := make([]migrations.DB, migrators)
	for i := range pools {
		pools[i] = pgtest.Pool(t)
	}
	start := make(chan struct{})
	applied := make([]int, migrators)
	errs := make([]error, migrators)
	var wg sync.WaitGroup
	for i, p := range pools {
		wg.Go(func() {
			<-start
			ms, err := migrations.Apply(ctx, p, table)
			applied[i], errs[i] = len(ms), err
		})
	}
	close(start)
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
		total += applied[i]
	}
	if want := len(migrations.All()); total != want {
		t.Errorf("migrators applied %d migrations between them; want each of the %d once", total, want)
	}

	pool := pools[0]
	var rows, tables int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table.MigrationsTable()).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(migrations.All()) {
		t.Errorf("%s has %d rows; want %d", table.MigrationsTable(), rows, len(migrations.All()))
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2",
		table.Schema, table.Name).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 1 {
		t.Errorf("found %d session tables; want 1", tables)
	}

	states, err := migrations.Status(ctx, pool, table)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if !s.Applied || s.Unknown || s.AppliedAt.IsZero() {
			t.Errorf("after Apply, status of %03d_%s = %+v; want applied", s.Version, s.Name, s)
		}
	}
	again, err := migrations.Apply(ctx, pool, table)
	if err != nil || len(again) != 0 {
		t.Errorf("second Apply = %d migrations, %v; want none", len(again), err)
	}
}

func TestStatusOfEmptySchema(t *testing.T) {
	t.Parallel()
	table, err := migrations.ParseTable(pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	states, err := migrations.Status(t.Context(), pgtest.Pool(t), table)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != len(migrations.All()) {
		t.Fatalf("Status listed %d migrations; want %d", len(states), len(migrations.All()))
	}
	for _, s := range states {
		if s.Applied {
			t.Errorf("migration %03d_%s is applied in an empty schema", s.Version, s.Name)
		}
	}
}

func TestApplyCreatesMissingSchemaAndResolvesUnqualifiedNames(t *testing.T) {
	t.Parallel()
	schema := strings.TrimSuffix(pgtest.Schema(t), ".session")
	nested := schema + "_new"
	t.Cleanup(func() { pgtest.Exec(t, `DROP SCHEMA IF EXISTS "`+nested+`" CASCADE`) })
	pool := pgtest.Pool(t)
	ctx := context.Background()
	if _, err := migrations.Apply(ctx, pool, migrations.Table{Schema: nested, Name: "session"}); err != nil {
		t.Fatalf("Apply into a missing schema: %v", err)
	}

	cfg := pgtest.Config(t, pgtest.URL(t))
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	scoped := pgtest.NewPool(t, cfg)
	table, err := migrations.ParseTable("sessions")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Apply(ctx, scoped, table); err != nil {
		t.Fatalf("Apply of an unqualified name: %v", err)
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", `"`+schema+`"."sessions"`).Scan(&exists); err != nil || !exists {
		t.Errorf("unqualified table was not created in the search_path's schema %s: %v", schema, err)
	}
}

// TestStatusReportsNewerSchema: a migration recorded by a newer version of
// the library is listed after the known ones, applied and Unknown, and the
// known ones are not.
func TestStatusReportsNewerSchema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.Pool(t)
	table, err := migrations.ParseTable(pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Apply(ctx, pool, table); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, "INSERT INTO "+table.MigrationsTable()+" (version, name) VALUES (999, 'from_the_future')")
	states, err := migrations.Status(ctx, pool, table)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != len(migrations.All())+1 {
		t.Fatalf("Status listed %d migrations; want %d", len(states), len(migrations.All())+1)
	}
	for _, s := range states[:len(states)-1] {
		if !s.Applied || s.Unknown {
			t.Errorf("known migration %03d_%s = %+v; want applied, known", s.Version, s.Name, s)
		}
	}
	if last := states[len(states)-1]; last.Version != 999 || last.Name != "from_the_future" || !last.Applied || !last.Unknown {
		t.Errorf("newer migration = %+v; want 999 from_the_future, applied, Unknown", last)
	}
	if again, err := migrations.Apply(ctx, pool, table); err != nil || len(again) != 0 {
		t.Errorf("Apply on a newer schema = %d migrations, %v; want none", len(again), err)
	}
}

// TestCheckPrivileges asks, for a role with only USAGE on the schema, what
// migrating needs at each stage: CREATE on a missing schema's database,
// CREATE on the schema for a missing table, ownership of an existing one.
func TestCheckPrivileges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := strings.TrimSuffix(pgtest.Schema(t), ".session")
	table := migrations.Table{Schema: schema, Name: "session"}
	role, roleURL := pgtest.Role(t)
	pgtest.Exec(t, `GRANT USAGE ON SCHEMA "`+schema+`" TO "`+role+`"`)
	admin, app := pgtest.Pool(t), pgtest.NewPool(t, pgtest.Config(t, roleURL))

	check := func(name string, db migrations.DB, tbl migrations.Table, want string) {
		t.Helper()
		err := migrations.CheckPrivileges(ctx, db, tbl)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want an error saying %q", name, err, want)
		}
	}
	check("missing schema", app, migrations.Table{Schema: schema + "_missing", Name: "session"}, "GRANT CREATE ON DATABASE")
	check("missing table", app, table, `GRANT CREATE ON SCHEMA "`+schema+`" TO "`+role+`"`)
	check("the administrator", admin, table, "")
	if _, err := migrations.Apply(ctx, admin, table); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, `GRANT CREATE ON SCHEMA "`+schema+`" TO "`+role+`"`)
	check("a table of another role's", app, table, "does not own the session table")
}

// TestTablesOfOthers: a table already under the session table's name that
// is express-session's, or another app's, is named as such by Check, Err
// and Apply, with the settings that fix it, and Apply leaves it alone.
func TestTablesOfOthers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ddl string
		express   bool
		want      []string
	}{
		{
			name:    "connect-pg-simple",
			ddl:     `("sid" varchar NOT NULL COLLATE "default" PRIMARY KEY, "sess" json NOT NULL, "expire" timestamp(6) NOT NULL)`,
			express: true,
			want: []string{"is express-session's (connect-pg-simple's table: sid, sess, expire)", "set SESSION_TABLE to a free name",
				"SESSION_EXPRESS_TABLE=%s to keep express-session's users signed in", "docs/migrating-from-express.md"},
		},
		{
			name: "another app's",
			ddl:  `(a integer, b text)`,
			want: []string{"belongs to something else: it has the columns a integer, b text", "set SESSION_TABLE to a free name"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := pgtest.Schema(t)
			table, err := migrations.ParseTable(name)
			if err != nil {
				t.Fatal(err)
			}
			pgtest.Exec(t, "CREATE TABLE "+table.String()+" "+tc.ddl)
			pool := pgtest.Pool(t)
			sc, err := migrations.Check(t.Context(), pool, table)
			if err != nil {
				t.Fatal(err)
			}
			if !sc.Exists || !sc.Foreign || sc.Express != tc.express {
				t.Errorf("Check = %+v; want it found, foreign, express %v", sc, tc.express)
			}
			_, applyErr := migrations.Apply(t.Context(), pool, table)
			for _, err := range []error{sc.Err(), applyErr} {
				if err == nil {
					t.Fatal("no error")
				}
				for _, want := range tc.want {
					if strings.Contains(want, "%s") {
						want = strings.ReplaceAll(want, "%s", name)
					}
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if strings.Contains(err.Error(), "SQLSTATE") || strings.Contains(err.Error(), "already exists") {
					t.Errorf("error %q is the database's, not ours", err)
				}
			}
			var exists bool
			if err := pool.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", table.MigrationsTable()).Scan(&exists); err != nil || exists {
				t.Errorf("Apply left %s behind (%v)", table.MigrationsTable(), err)
			}
		})
	}
}
