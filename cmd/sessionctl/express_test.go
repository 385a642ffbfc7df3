package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/expressimport"
	"github.com/smartscheduler/session/internal/nodetest"
	"github.com/smartscheduler/session/internal/pgtest"
)

// connectPgSimpleTable is the DDL of connect-pg-simple 10's table.sql.
const connectPgSimpleTable = `("sid" varchar NOT NULL COLLATE "default" PRIMARY KEY, "sess" json NOT NULL, "expire" timestamp(6) NOT NULL)`

// TestMessagesOnTablesOfOthers: check, migrate and migrate --status, on a
// session table that is express-session's or another app's, say whose it
// is and what to set, never the database's bare error nor "run sessionctl
// migrate", which cannot help.
func TestMessagesOnTablesOfOthers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ddl string
		want      []string
	}{
		{"express-session's", connectPgSimpleTable, []string{"is express-session's (connect-pg-simple's table: sid, sess, expire)",
			"set SESSION_TABLE to a free name", "SESSION_EXPRESS_TABLE=%s"}},
		{"another app's", "(id serial PRIMARY KEY, title text)", []string{"belongs to something else: it has the columns id integer, title text",
			"set SESSION_TABLE to a free name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := productionEnv(t)
			pgtest.Exec(t, "CREATE TABLE "+quoted(env["SESSION_TABLE"])+" "+tc.ddl)
			check := func(what, out string) {
				t.Helper()
				assertNoSecrets(t, env, out)
				for _, want := range tc.want {
					want = strings.ReplaceAll(want, "%s", env["SESSION_TABLE"])
					if !strings.Contains(out, want) {
						t.Errorf("%s: output lacks %q:\n%s", what, want, out)
					}
				}
				for _, bad := range []string{"SQLSTATE", "already exists", "sessionctl migrate\"", "pending"} {
					if strings.Contains(out, bad) {
						t.Errorf("%s: output says %q:\n%s", what, bad, out)
					}
				}
			}
			results, code := checkJSON(t, env)
			if r := results["session table"]; code != exitFailed || r.Status != fail {
				t.Errorf("check: exit %d, session table %+v; want a failure", code, r)
			} else {
				check("check", r.Detail+": "+r.Fix)
			}
			stdout, stderr, code := sessionctl(t, env, "migrate")
			if code != exitFailed {
				t.Errorf("migrate: exit %d", code)
			}
			check("migrate", stdout+stderr)
			stdout, stderr, code = sessionctl(t, env, "migrate", "--status")
			if code != exitFailed {
				t.Errorf("migrate --status: exit %d", code)
			}
			check("migrate --status", stdout+stderr)
		})
	}
}

// nodeSecret is the Node app's SESSION_SECRET: too weak for production
// here, so the Go side keeps it as a previous secret.
const nodeSecret = "keyboard cat"

// expressEnv is a production environment for the move: this library's
// table and connect-pg-simple's in one fresh schema, a new secret, and
// the Node app's as a previous one.
func expressEnv(t *testing.T) (env map[string]string, schema string) {
	t.Helper()
	env = productionEnv(t)
	schema = strings.TrimSuffix(env["SESSION_TABLE"], ".session")
	env["SESSION_TABLE"] = schema + ".go_session"
	env["SESSION_EXPRESS_TABLE"] = schema + ".session"
	env["SESSION_EXPRESS_SECRET"] = nodeSecret // too weak for a secret of this library's
	return env, schema
}

// goApp is the Go side: the app on the library, configured from env as it
// would be in production but for plain HTTP.
type goApp struct {
	*httptest.Server
	manager *session.Manager
}

func startGoApp(t *testing.T, env map[string]string) *goApp {
	t.Helper()
	cfg, err := session.ConfigFromLookup(func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	// Plain HTTP in tests: the cookie must not be Secure.
	cfg.Production, cfg.CookieName = false, "session"
	m, err := session.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		user, err := session.FromContext(r.Context()).UserID()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, user)
	})
	srv := httptest.NewServer(m.Handler(mux))
	t.Cleanup(srv.Close)
	return &goApp{Server: srv, manager: m}
}

// call GETs url with c and returns the body and the response.
func call(t *testing.T, c *http.Client, url string) (string, *http.Response) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body), resp
}

func importResult(t *testing.T, env map[string]string, args ...string) (result struct {
	DryRun bool `json:"dry_run"`
	expressimport.Result
}) {
	t.Helper()
	stdout, stderr, code := sessionctl(t, env, append([]string{"express", "import", "--json"}, args...)...)
	assertNoSecrets(t, env, stdout, stderr)
	if code != exitOK {
		t.Fatalf("express import %v: exit %d\n%s%s", args, code, stdout, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &result); err != nil {
		t.Fatalf("express import --json printed %q: %v", stdout, err)
	}
	return result
}

// TestExpressBulkImport signs users in on the real Node app and leaves
// rows of many more, then moves them all with sessionctl express import
// while the Go app serves first requests for some of them: every user ends
// with exactly one session, the Node-issued cookies still sign in (and are
// re-issued as the library's), a second run moves nothing, a dry run
// changes nothing, and stats and check count it all.
func TestExpressBulkImport(t *testing.T) {
	t.Parallel()
	env, schema := expressEnv(t)
	node := nodetest.StartExpressApp(t, map[string]string{"DATABASE_URL": pgtest.URL(t), "SESSION_SCHEMA": schema, "SESSION_SECRET": nodeSecret})
	legacy := pgx.Identifier{schema, "session"}.Sanitize()
	native := pgx.Identifier{schema, "go_session"}.Sanitize()

	// Two browsers signed in on Node: remembered, and a browser session.
	browsers := map[string]*http.Client{}
	for _, login := range []string{"user=ada&remember=1", "user=grace&remember=0"} {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
		resp, err := c.Post(node.URL()+"/login?"+login, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		// Read to the end: express-session ends the response once the
		// session is saved.
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("Node /login?%s: %s %s, %v", login, resp.Status, body, err)
		}
		browsers[strings.TrimPrefix(strings.Split(login, "&")[0], "user=")] = c
	}
	// Many more users, as connect-pg-simple left them, and expired rows.
	const many = 120
	soon := time.Now().Add(24 * time.Hour)
	for i := range many {
		sess := fmt.Sprintf(`{"cookie":{"originalMaxAge":86400000,"expires":%q,"path":"/"},"passport":{"user":%d},"visits":%d}`,
			soon.UTC().Format("2006-01-02T15:04:05.000Z"), i, i)
		pgtest.Exec(t, "INSERT INTO "+legacy+" (sid, sess, expire) VALUES ($1, $2, to_timestamp($3::float8))", fmt.Sprintf("sid-%03d", i), sess, soon.Unix())
	}
	for i := range 3 {
		pgtest.Exec(t, "INSERT INTO "+legacy+" (sid, sess, expire) VALUES ($1, '{\"cookie\":{}}', to_timestamp($2::float8))", fmt.Sprintf("old-%d", i), time.Now().Add(-time.Hour).Unix())
	}
	pgtest.Exec(t, "INSERT INTO "+legacy+" (sid, sess, expire) VALUES ('bad', '[1,2]', to_timestamp($1::float8))", soon.Unix())
	live := many + 2 + 1
	count := func(sql string) int {
		t.Helper()
		var n int
		if err := pgtest.Pool(t).QueryRow(t.Context(), sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	if _, stderr, code := sessionctl(t, env, "migrate"); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	dry := importResult(t, env, "--dry-run")
	if !dry.DryRun || dry.Imported != int64(live-1) || dry.Unreadable != 1 || dry.Expired != 3 || dry.Remaining != int64(live) {
		t.Errorf("dry run = %+v; want %d to move, 1 unreadable, 3 expired, all %d still there", dry, live-1, live)
	}
	if n := count("SELECT count(*) FROM " + legacy); n != live+3 {
		t.Errorf("after the dry run the Node table holds %d rows, want %d", n, live+3)
	}
	if n := count("SELECT count(*) FROM " + native); n != 0 {
		t.Errorf("after the dry run the library's table holds %d rows", n)
	}

	// The Go app serves first requests of the many while the import runs.
	app := startGoApp(t, env)
	var wg sync.WaitGroup
	var got sync.Map // sid -> the native cookie its first request got, if any
	for i := 0; i < many; i += 3 {
		sid := fmt.Sprintf("sid-%03d", i)
		wg.Go(func() {
			req, _ := http.NewRequest("GET", app.URL+"/whoami", nil)
			req.Header.Set("Cookie", "connect.sid="+nodetest.ConnectSID(sid, nodeSecret))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			want := fmt.Sprint(i)
			switch ck := findCookie(resp, "session"); {
			case resp.StatusCode != http.StatusOK:
				t.Errorf("%s during the import: %s %s", sid, resp.Status, body)
			case ck == nil || string(body) != want:
				t.Errorf("%s during the import: whoami %q, cookie %v; want %s and a cookie", sid, body, ck, want)
			default:
				got.Store(sid, ck.Value)
			}
		})
	}
	moved := importResult(t, env, "--batch", "7")
	wg.Wait()
	// Remaining is counted as the import ends: besides the unreadable row
	// it may include rows a first request was moving at that moment (the
	// import leaves a locked row to the request holding it). Once every
	// request is answered, only the unreadable row is left.
	if moved.Batches < 2 || moved.Unreadable != 1 || moved.Expired != 3 || moved.Remaining < 1 {
		t.Errorf("import = %+v; want several batches, 1 unreadable left, 3 expired", moved)
	}
	if n := count("SELECT count(*) FROM " + legacy + " WHERE expire > now()"); n != 1 {
		t.Errorf("after the import and the first requests the Node table holds %d live rows, want only the unreadable one", n)
	}
	if moved.Imported > int64(live-1) {
		t.Errorf("import moved %d, more than the %d there were", moved.Imported, live-1)
	}
	// One session per user, whoever moved it.
	if n := count("SELECT count(*) FROM (SELECT user_id FROM " + native + " GROUP BY user_id HAVING count(*) <> 1) dup"); n != 0 {
		t.Errorf("%d users have more or fewer than one session", n)
	}
	if n := count("SELECT count(DISTINCT user_id) FROM " + native); n != live-1 {
		t.Errorf("%d users have a session, want %d", n, live-1)
	}
	// Each cookie given during the import still signs in; every other
	// connect.sid now finds its bulk-moved session.
	for i := range many {
		sid := fmt.Sprintf("sid-%03d", i)
		cookie := "connect.sid=" + nodetest.ConnectSID(sid, nodeSecret)
		if v, ok := got.Load(sid); ok {
			cookie = "session=" + v.(string)
		}
		req, _ := http.NewRequest("GET", app.URL+"/whoami", nil)
		req.Header.Set("Cookie", cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != fmt.Sprint(i) {
			t.Errorf("%s after the import (%s): whoami %q", sid, strings.Split(cookie, "=")[0], body)
		}
	}

	// The browsers signed in on Node: their connect.sid signs in on Go and
	// is replaced by the library's cookie.
	for user, c := range browsers {
		body, resp := call(t, c, app.URL+"/whoami")
		if body != user || findCookie(resp, "session") == nil {
			t.Errorf("%s's Node cookie on Go: whoami %q, cookies %v", user, body, resp.Header["Set-Cookie"])
		}
		if ck := findCookie(resp, "connect.sid"); ck == nil || ck.MaxAge >= 0 {
			t.Errorf("%s: connect.sid not cleared: %v", user, resp.Header["Set-Cookie"])
		}
		if body, _ := call(t, c, app.URL+"/whoami"); body != user {
			t.Errorf("%s with the re-issued cookie: whoami %q", user, body)
		}
		if infos, err := app.manager.UserSessions(t.Context(), user); err != nil || len(infos) != 1 {
			t.Errorf("UserSessions(%s) = %v, %v", user, infos, err)
		}
	}

	again := importResult(t, env)
	if again.Imported != 0 || again.Remaining != 1 {
		t.Errorf("second import = %+v; want nothing moved", again)
	}

	stdout, stderr, code := sessionctl(t, env, "stats", "--json")
	var stats struct {
		Express *expressimport.Counts `json:"express"`
	}
	if err := json.Unmarshal([]byte(stdout), &stats); err != nil || code != exitOK || stats.Express == nil {
		t.Fatalf("stats --json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	e := stats.Express
	if e.Live != 1 || e.Expired != 3 || e.ImportedOnRequest+e.ImportedInBulk != int64(live-1) || e.ImportedInBulk != moved.Imported {
		t.Errorf("stats = %+v; want 1 live, 3 expired, %d moved (%d in bulk)", e, live-1, moved.Imported)
	}
	// Every bulk-moved session whose user came back has been claimed.
	if e.Waiting != 0 {
		t.Errorf("stats: %d still waiting, want none: every user came back", e.Waiting)
	}
	stdout, _, _ = sessionctl(t, env, "stats")
	for _, want := range []string{"express table  " + legacy, "to move      1 live session(s); 3 expired", "in bulk"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stats lacks %q:\n%s", want, stdout)
		}
	}
	results, _ := checkJSON(t, env)
	if r := results["express import"]; r.Status != pass || !strings.Contains(r.Detail, "1 session(s) to move, 3 expired") || !strings.Contains(r.Detail, "expire read in TimeZone") {
		t.Errorf("check's express line = %+v", r)
	}

	stdout, stderr, code = sessionctl(t, env, "express", "prune")
	if code != exitOK || !strings.Contains(stdout, "Pruned 3 expired express-session row(s)") {
		t.Errorf("express prune: exit %d\n%s%s", code, stdout, stderr)
	}
}

// findCookie returns the Set-Cookie named name, or nil.
func findCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestExpressCheckWarnsOfAZoneNodeDoesNotHave(t *testing.T) {
	t.Parallel()
	env, schema := expressEnv(t)
	pgtest.Exec(t, "CREATE TABLE "+pgx.Identifier{schema, "session"}.Sanitize()+" "+connectPgSimpleTable)
	if _, stderr, code := sessionctl(t, env, "migrate"); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	results, _ := checkJSON(t, env)
	if r := results["express import"]; r.Status != pass || !strings.Contains(r.Detail, "SESSION_EXPRESS_TIMEZONE unset: this connection's") {
		t.Errorf("check without PGTZ: %+v", r)
	}
	env["PGTZ"] = "Asia/Tokyo"
	results, _ = checkJSON(t, env)
	if r := results["express import"]; r.Status != warn || !strings.Contains(r.Fix, "PGTZ sets this connection's TimeZone") {
		t.Errorf("check with PGTZ: %+v", r)
	}
	env["SESSION_EXPRESS_TIMEZONE"] = "America/New_York"
	results, _ = checkJSON(t, env)
	if r := results["express import"]; r.Status != pass || !strings.Contains(r.Detail, "TimeZone America/New_York (SESSION_EXPRESS_TIMEZONE)") {
		t.Errorf("check with SESSION_EXPRESS_TIMEZONE: %+v", r)
	}
	env["SESSION_EXPRESS_TIMEZONE"] = "Mars/Olympus_Mons"
	results, code := checkJSON(t, env)
	if r := results["express import"]; code != exitFailed || r.Status != fail || !strings.Contains(r.Detail, "PostgreSQL does not know") {
		t.Errorf("check with an unknown zone: exit %d, %+v", code, r)
	}
}

func TestExpressCommandUsage(t *testing.T) {
	t.Parallel()
	env := productionEnv(t)
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"express"}, exitUsage, "Usage: sessionctl express <import|prune>"},
		{[]string{"express", "frob"}, exitUsage, `unknown subcommand "frob"`},
		{[]string{"express", "import", "--batch", "0"}, exitUsage, "--batch must be at least 1"},
		{[]string{"express", "import"}, exitFailed, "SESSION_EXPRESS_TABLE is not set"},
		{[]string{"express", "prune"}, exitFailed, "SESSION_EXPRESS_TABLE is not set"},
	} {
		_, stderr, code := sessionctl(t, env, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, tt.code, tt.stderr)
		}
	}
	for _, args := range [][]string{{"express", "--help"}, {"express", "import", "--help"}, {"express", "prune", "--help"}} {
		if stdout, _, code := sessionctl(t, nil, args...); code != exitOK || !strings.Contains(stdout, "Usage: sessionctl express") {
			t.Errorf("%v: exit %d\n%s", args, code, stdout)
		}
	}
}
