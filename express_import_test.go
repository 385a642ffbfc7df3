package session_test

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/nodetest"
	"github.com/smartscheduler/session/internal/pgtest"
)

// These tests drive the import from express-session through the request
// path against a connect-pg-simple table made with its own table.sql, with
// cookies signed here as cookie-signature signs them; express_node_test.go
// and express_import_node_test.go do it with the real Node app.

// expressTables is a schema holding connect-pg-simple's table and, beside
// it, this library's.
type expressTables struct {
	schema string
	// legacy and table are the two as SESSION_EXPRESS_TABLE and
	// SESSION_TABLE name them.
	legacy, table string
}

// newExpressTables creates connect-pg-simple's table in a fresh schema, as
// its table.sql does.
func newExpressTables(t *testing.T) expressTables {
	t.Helper()
	schema := schemaOf(pgtest.Schema(t))
	e := expressTables{schema: schema, legacy: schema + ".session", table: schema + ".go_session"}
	pgtest.Exec(t, `CREATE TABLE `+e.quotedLegacy()+` ("sid" varchar NOT NULL COLLATE "default", "sess" json NOT NULL, "expire" timestamp(6) NOT NULL)`)
	pgtest.Exec(t, `ALTER TABLE `+e.quotedLegacy()+` ADD CONSTRAINT "session_pkey" PRIMARY KEY ("sid") NOT DEFERRABLE INITIALLY IMMEDIATE`)
	return e
}

func (e expressTables) quotedLegacy() string { return pgx.Identifier{e.schema, "session"}.Sanitize() }
func (e expressTables) quotedTable() string  { return pgx.Identifier{e.schema, "go_session"}.Sanitize() }

// insert stores a row as connect-pg-simple's set does: expire from
// to_timestamp, so in the TimeZone of the connection that writes it,
// which for the test server's pools is the server's default, as it is for
// the Node app and for the library's own connections.
func (e expressTables) insert(t *testing.T, sid, sess string, expire time.Time) {
	t.Helper()
	pgtest.Exec(t, "INSERT INTO "+e.quotedLegacy()+" (sid, sess, expire) VALUES ($1, $2, to_timestamp($3::float8))", sid, sess, float64(expire.UnixMilli())/1000)
}

// legacyRows counts the rows under sid in connect-pg-simple's table.
func (e expressTables) legacyRows(t *testing.T, sid string) int {
	t.Helper()
	var n int
	if err := pgxQueryRow(t, "SELECT count(*) FROM "+e.quotedLegacy()+" WHERE sid = $1", sid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// rows counts this library's rows, live or not.
func (e expressTables) rows(t *testing.T) int {
	t.Helper()
	var n int
	if err := pgxQueryRow(t, "SELECT count(*) FROM "+e.quotedTable()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// expressSess is a sess column as express-session writes it for a
// remembered sign-in of user until expires.
func expressSess(user string, expires time.Time) string {
	return fmt.Sprintf(`{"cookie":{"originalMaxAge":1209600000,"expires":%q,"secure":false,"httpOnly":true,"path":"/","sameSite":"lax"},"passport":{"user":%q},"visits":2,"flash":{"info":["Welcome back, %s"]}}`,
		expires.UTC().Format("2006-01-02T15:04:05.000Z"), user, user)
}

// sqlLog is a pgx tracer that keeps every statement sent, to show which
// tables a request touched.
type sqlLog struct {
	mu         sync.Mutex
	statements []string
}

func (l *sqlLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.statements = append(l.statements, data.SQL)
	return ctx
}

func (l *sqlLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// take returns the statements sent since the last take.
func (l *sqlLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.statements
	l.statements = nil
	return s
}

// bothTracers sends each statement to a statementCounter and an sqlLog.
type bothTracers struct {
	counter *statementCounter
	log     *sqlLog
}

func (b bothTracers) TraceQueryStart(ctx context.Context, c *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	b.log.TraceQueryStart(ctx, c, data)
	return b.counter.TraceQueryStart(ctx, c, data)
}

func (b bothTracers) TraceQueryEnd(ctx context.Context, c *pgx.Conn, data pgx.TraceQueryEndData) {}

// expressApp is an app instance with the import configured on e.
type expressApp struct {
	*testServer
	counter *statementCounter
	log     *sqlLog
	logs    *syncBuffer
}

// startExpressApp serves handler behind a Manager on its own counted pool,
// with cfg's ExpressTable and Table defaulting to e's and its Secret to
// expressSecret. Counting starts from zero once New has returned.
func startExpressApp(t *testing.T, e expressTables, cfg session.Config, handler http.Handler) *expressApp {
	t.Helper()
	app := &expressApp{counter: &statementCounter{}, log: &sqlLog{}, logs: &syncBuffer{}}
	poolCfg := pgtest.Config(t, pgtest.URL(t))
	poolCfg.ConnConfig.Tracer = bothTracers{app.counter, app.log}
	if cfg.Table == "" {
		cfg.Table = e.table
	}
	if cfg.ExpressTable == "" {
		cfg.ExpressTable = e.legacy
	}
	if cfg.Secret == "" {
		cfg.Secret = expressSecret
	}
	store, err := session.NewPostgresStore(t.Context(), pgtest.NewPool(t, poolCfg), session.PostgresOptions{Table: cfg.Table})
	if err != nil {
		t.Fatal(err)
	}
	m, err := session.New(t.Context(), cfg, session.WithStore(store), session.WithLogger(slog.New(slog.NewTextHandler(app.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatalf("session.New: %v", err)
	}
	t.Cleanup(m.Close)
	srv := httptest.NewServer(m.Handler(handler))
	t.Cleanup(srv.Close)
	app.testServer = &testServer{Server: srv, manager: m}
	*app.counter = statementCounter{}
	app.log.take()
	return app
}

// expressSecret is the secret both the Node app and the Go app use in
// these tests: the Node app's was as weak as this, hence a previous
// secret in the production tests.
const expressSecret = "keyboard cat (the Node app's secret)"

// get sends one request with cookieHeader as its whole Cookie header.
func (a *expressApp) get(t *testing.T, path, cookieHeader string) (*http.Response, string) {
	t.Helper()
	return rawCookieGet(t, a.testServer, path, cookieHeader)
}

// legacyCleared reports whether resp expires connect.sid.
func legacyCleared(resp *http.Response) bool {
	ck := setCookie(resp, "connect.sid")
	return ck != nil && ck.MaxAge < 0 && ck.Value == ""
}

func TestExpressImportOnFirstRequest(t *testing.T) {
	t.Parallel()
	e := newExpressTables(t)
	app := startExpressApp(t, e, session.Config{}, appHandler())
	expires := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Millisecond)
	e.insert(t, "sid-ada", expressSess("ada", expires), expires)

	resp, body := app.get(t, "/dump", "connect.sid="+nodetest.ConnectSID("sid-ada", expressSecret))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, want := range []string{`"passport":{"user":"ada"}`, `"visits":2`, `"flash":{"info":["Welcome back, ada"]}`} {
		if !strings.Contains(body, want) {
			t.Errorf("imported session %s lacks %s", body, want)
		}
	}
	if strings.Contains(body, `"cookie"`) {
		t.Errorf("imported session kept express's cookie object: %s", body)
	}
	native := setCookie(resp, "session")
	if native == nil || native.Value == "" {
		t.Fatalf("no native cookie set: %v", resp.Header["Set-Cookie"])
	}
	if strings.Contains(native.Value, "sid-ada") {
		t.Error("the native cookie carries the express sid")
	}
	if d := native.Expires.Sub(expires); d < -time.Second || d > time.Second {
		t.Errorf("native cookie expires %v, want the express session's %v", native.Expires, expires)
	}
	if !legacyCleared(resp) || setCookie(resp, "connect.sid").Path != "/" {
		t.Errorf("connect.sid not cleared with Path=/: %v", resp.Header["Set-Cookie"])
	}
	if n := e.legacyRows(t, "sid-ada"); n != 0 {
		t.Errorf("the express row is still there (%d)", n)
	}
	infos, err := app.manager.UserSessions(t.Context(), "ada")
	if err != nil || len(infos) != 1 {
		t.Fatalf("UserSessions(ada) = %v, %v; want the imported session", infos, err)
	}
	if infos[0].Key == sha256Hex("sid-ada") {
		t.Error("the session is stored under the hash of the express sid")
	}

	// The native cookie carries the session from now on; the replayed
	// connect.sid alone carries nothing.
	if _, body := app.get(t, "/whoami", "session="+native.Value); body != "ada" {
		t.Errorf("with the native cookie: whoami = %q, want ada", body)
	}
	resp, body = app.get(t, "/whoami", "connect.sid="+nodetest.ConnectSID("sid-ada", expressSecret))
	if body != "" || setCookie(resp, "session") != nil {
		t.Errorf("replayed connect.sid: whoami = %q, cookies %v; want nobody and no session", body, resp.Header["Set-Cookie"])
	}
}

func TestExpressImportDeadlines(t *testing.T) {
	t.Parallel()
	e := newExpressTables(t)
	const lifetime = 48 * time.Hour
	app := startExpressApp(t, e, session.Config{Lifetime: lifetime}, appHandler())
	now := time.Now()
	tests := []struct {
		name, sess     string
		expire         time.Time
		wantPersistent bool
		want           time.Time // the session's deadline
	}{
		{"within the lifetime", expressSess("ada", now.Add(24*time.Hour)), now.Add(24 * time.Hour), true, now.Add(24 * time.Hour)},
		{"capped by SESSION_LIFETIME", expressSess("ada", now.Add(10*24*time.Hour)), now.Add(10 * 24 * time.Hour), true, now.Add(lifetime)},
		{"browser session: the row's expire", `{"cookie":{"originalMaxAge":null,"expires":null,"path":"/"},"passport":{"user":"ada"}}`, now.Add(20 * time.Hour), false, now.Add(20 * time.Hour)},
	}
	for i, tt := range tests {
		sid := fmt.Sprintf("sid-%d", i)
		e.insert(t, sid, tt.sess, tt.expire)
		resp, body := app.get(t, "/whoami", "connect.sid="+nodetest.ConnectSID(sid, expressSecret))
		native := setCookie(resp, "session")
		if body != "ada" || native == nil {
			t.Errorf("%s: whoami = %q, cookie %v", tt.name, body, native)
			continue
		}
		if persistent := !native.Expires.IsZero(); persistent != tt.wantPersistent {
			t.Errorf("%s: persistent cookie: %v, want %v (%v)", tt.name, persistent, tt.wantPersistent, native)
		}
		var expiry time.Time
		if err := pgxQueryRow(t, "SELECT expires_at FROM "+e.quotedTable()+" WHERE user_id = 'ada' ORDER BY created_at DESC LIMIT 1").Scan(&expiry); err != nil {
			t.Fatal(err)
		}
		if d := expiry.Sub(tt.want); d < -2*time.Second || d > 2*time.Second {
			t.Errorf("%s: stored deadline %v, want %v", tt.name, expiry, tt.want)
		}
	}
}

// TestExpressImportCostsOthersNothing holds the import to its price: no
// SQL for a request with neither cookie or a connect.sid that does not
// verify, never a look at the Node table for a request with a native
// cookie, and nothing at all without SESSION_EXPRESS_TABLE.
func TestExpressImportCostsOthersNothing(t *testing.T) {
	t.Parallel()
	e := newExpressTables(t)
	expires := time.Now().Add(time.Hour)
	e.insert(t, "sid-ada", expressSess("ada", expires), expires)
	valid := nodetest.ConnectSID("sid-ada", expressSecret)
	app := startExpressApp(t, e, session.Config{}, appHandler())

	for _, tt := range []struct{ name, cookie string }{
		{"no cookie", ""},
		{"connect.sid signed with another secret", "connect.sid=" + nodetest.ConnectSID("sid-ada", "another secret")},
		{"connect.sid of another sid's signature", "connect.sid=" + strings.Replace(valid, "sid-ada", "sid-bob", 1)},
		{"connect.sid unsigned", "connect.sid=sid-ada"},
		{"connect.sid truncated", "connect.sid=" + valid[:len(valid)-3]},
		{"connect.sid as cookie-parser JSON", "connect.sid=j%3A%7B%7D"},
		{"connect.sid of 4 KB", "connect.sid=s%3A" + strings.Repeat("a", 4096) + ".x"},
		{"a foreign session cookie too", "session=garbage; connect.sid=" + nodetest.ConnectSID("sid-ada", "another secret")},
		{"empty connect.sid", "connect.sid="},
		{"prefix only", "connect.sid=s%3A"},
		{"lone percent", "connect.sid=%"},
		{"escapes of invalid UTF-8", "connect.sid=s%3A%C3%28." + strings.SplitN(valid, ".", 2)[1]},
		{"8 KB of escapes", "connect.sid=" + strings.Repeat("%25", 8<<10/3)},
		// Only the first four are tried, as for the session cookie.
		{"the valid one fifth", strings.Repeat("connect.sid=x; ", 4) + "connect.sid=" + valid},
	} {
		resp, body := app.get(t, "/whoami", tt.cookie)
		if resp.StatusCode != http.StatusOK || body != "" {
			t.Errorf("%s: status %d, whoami %q; want 200 and nobody", tt.name, resp.StatusCode, body)
		}
		if n := app.counter.total(); n != 0 {
			t.Errorf("%s: %d statements: %q", tt.name, n, app.log.take())
		}
		if setCookie(resp, "connect.sid") != nil {
			t.Errorf("%s: a connect.sid that does not verify was touched: %v", tt.name, resp.Header["Set-Cookie"])
		}
	}

	// A native session, and the same browser's connect.sid: only the
	// native session is read.
	resp, _ := app.get(t, "/set?color=teal", "")
	native := setCookie(resp, "session")
	app.log.take()
	resp, body := app.get(t, "/get?key=color", "session="+native.Value+"; connect.sid="+valid)
	if body != "teal" || setCookie(resp, "connect.sid") != nil {
		t.Errorf("native + connect.sid: color %q, cookies %v; want teal and connect.sid untouched", body, resp.Header["Set-Cookie"])
	}
	for _, sql := range app.log.take() {
		if strings.Contains(sql, e.quotedLegacy()) || strings.Contains(sql, "express_import") {
			t.Errorf("a request with a native cookie sent %q", sql)
		}
	}
	if e.legacyRows(t, "sid-ada") != 1 {
		t.Error("the express row went away")
	}

	// Without SESSION_EXPRESS_TABLE, a valid connect.sid is nothing.
	plain := startPostgresInstance(t, e.table, session.Config{Secret: expressSecret}, appHandler())
	resp, body = rawCookieGet(t, plain.testServer, "/whoami", "connect.sid="+valid)
	if body != "" || setCookie(resp, "connect.sid") != nil || plain.counter.total() != 0 {
		t.Errorf("without SESSION_EXPRESS_TABLE: whoami %q, cookies %v, %d statements; want nothing", body, resp.Header["Set-Cookie"], plain.counter.total())
	}
	if e.legacyRows(t, "sid-ada") != 1 {
		t.Error("the express row went away")
	}
}

// TestExpressImportRace sends 16 first requests with one connect.sid at
// once, each counting a visit: exactly one session results, and each
// response carries that session's cookie or none.
func TestExpressImportRace(t *testing.T) {
	t.Parallel()
	e := newExpressTables(t)
	app := startExpressApp(t, e, session.Config{}, appHandler())
	for round := range 3 {
		sid := fmt.Sprintf("sid-race-%d", round)
		expires := time.Now().Add(time.Hour)
		e.insert(t, sid, expressSess("ada", expires), expires)
		before := e.rows(t)
		const n = 16
		var wg sync.WaitGroup
		var mu sync.Mutex
		cookies := map[string]int{}
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				resp, body := app.get(t, "/visit", "connect.sid="+nodetest.ConnectSID(sid, expressSecret))
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %d: %s", resp.StatusCode, body)
				}
				mu.Lock()
				defer mu.Unlock()
				if ck := setCookie(resp, "session"); ck != nil {
					cookies[ck.Value]++
				}
			})
		}
		close(start)
		wg.Wait()
		if len(cookies) != 1 {
			t.Fatalf("round %d: %d distinct session cookies set, want 1: %v", round, len(cookies), cookies)
		}
		if got := e.rows(t) - before; got != 1 {
			t.Errorf("round %d: %d sessions stored, want 1", round, got)
		}
		for value := range cookies {
			if _, body := app.get(t, "/whoami", "session="+value); body != "ada" {
				t.Errorf("round %d: the cookie set signs in as %q", round, body)
			}
			if logs := app.logs.String(); strings.Contains(logs, sid) || strings.Contains(logs, value) {
				t.Errorf("round %d: the log shows the sid or the token:\n%s", round, logs)
			}
		}
	}
	if !strings.Contains(app.logs.String(), "another request took over") {
		t.Errorf("the requests that lost the race logged nothing at debug level:\n%s", app.logs.String())
	}
}

// TestExpressImportWithoutRead covers handlers that write or sign out
// without reading first: the legacy session is imported all the same, so
// a write lands in it and a sign-out ends it for good.
func TestExpressImportWithoutRead(t *testing.T) {
	t.Parallel()
	e := newExpressTables(t)
	app := startExpressApp(t, e, session.Config{}, appHandler())
	expires := time.Now().Add(time.Hour)
	e.insert(t, "sid-write", expressSess("ada", expires), expires)
	e.insert(t, "sid-out", expressSess("grace", expires), expires)

	resp, _ := app.get(t, "/set?color=teal", "connect.sid="+nodetest.ConnectSID("sid-write", expressSecret))
	native := setCookie(resp, "session")
	if native == nil || !legacyCleared(resp) {
		t.Fatalf("a write-only request: cookies %v", resp.Header["Set-Cookie"])
	}
	if _, body := app.get(t, "/dump", "session="+native.Value); !strings.Contains(body, `"color":"teal"`) || !strings.Contains(body, `"visits":2`) {
		t.Errorf("after a write-only request the session holds %s; want the express values and color", body)
	}

	resp, _ = app.get(t, "/destroy", "connect.sid="+nodetest.ConnectSID("sid-out", expressSecret))
	if setCookie(resp, "session") != nil || !legacyCleared(resp) {
		t.Errorf("sign-out: cookies %v; want connect.sid cleared and no session", resp.Header["Set-Cookie"])
	}
	if _, body := app.get(t, "/whoami", "connect.sid="+nodetest.ConnectSID("sid-out", expressSecret)); body != "" {
		t.Errorf("after sign-out the connect.sid signs in as %q", body)
	}
	if infos, _ := app.manager.UserSessions(t.Context(), "grace"); len(infos) != 0 {
		t.Errorf("grace still has %d sessions", len(infos))
	}
}

func TestExpressImportUnreadableRow(t *testing.T) {
	t.Parallel()
	e := newExpressTables(t)
	app := startExpressApp(t, e, session.Config{}, appHandler())
	expires := time.Now().Add(time.Hour)
	// Valid JSON that is not a session: express-session would choke on it.
	e.insert(t, "sid-null", `null`, expires)
	e.insert(t, "sid-user", `{"passport":{"user":{"id":1}}}`, expires)
	e.insert(t, "sid-nul", `{"passport":{"user":"ada"},"note":"a\u0000b"}`, expires)
	for _, sid := range []string{"sid-null", "sid-user", "sid-nul"} {
		resp, body := app.get(t, "/visit", "connect.sid="+nodetest.ConnectSID(sid, expressSecret))
		if resp.StatusCode != http.StatusOK || body != "1" {
			t.Errorf("%s: status %d, visit %q; want 200 and a new session's first visit", sid, resp.StatusCode, body)
		}
		if !legacyCleared(resp) {
			t.Errorf("%s: connect.sid not cleared: %v", sid, resp.Header["Set-Cookie"])
		}
		if e.legacyRows(t, sid) != 0 {
			t.Errorf("%s: the row was left", sid)
		}
	}
	logs := app.logs.String()
	if got := strings.Count(logs, "cannot be read"); got != 3 {
		t.Errorf("%d warnings for 3 unreadable rows:\n%s", got, logs)
	}
	for _, sid := range []string{"sid-null", "sid-user", "sid-nul"} {
		if strings.Contains(logs, sid) || strings.Contains(logs, url.QueryEscape(nodetest.ConnectSID(sid, expressSecret))) {
			t.Errorf("the log shows %s:\n%s", sid, logs)
		}
	}
}

// TestNewNamesTheTableOfOthers: New, migrating or not, on a session table
// that is express-session's or another app's says whose it is and what to
// set, in environment variables, never with the database's bare error.
func TestNewNamesTheTableOfOthers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// foreign creates the table; it returns what the error must say.
		foreign func(t *testing.T, e expressTables) []string
	}{
		{"express-session's", func(t *testing.T, e expressTables) []string {
			return []string{e.quotedLegacy() + " is express-session's", "set SESSION_TABLE to a free name", "SESSION_EXPRESS_TABLE=" + e.legacy}
		}},
		{"another app's", func(t *testing.T, e expressTables) []string {
			pgtest.Exec(t, "DROP TABLE "+e.quotedLegacy())
			pgtest.Exec(t, "CREATE TABLE "+e.quotedLegacy()+" (id serial PRIMARY KEY, title text)")
			return []string{e.quotedLegacy() + " belongs to something else", "id integer, title text", "set SESSION_TABLE to a free name"}
		}},
	} {
		for _, manual := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, manual migrations %v", tc.name, manual), func(t *testing.T) {
				t.Parallel()
				e := newExpressTables(t)
				want := tc.foreign(t, e)
				_, err := session.New(t.Context(), session.Config{UsePostgres: true, DatabaseURL: pgtest.URL(t), Table: e.legacy, ManualMigrations: manual},
					session.WithLogger(discardLogger))
				if err == nil {
					t.Fatal("New succeeded on a table of others")
				}
				for _, w := range want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				for _, bad := range []string{"SQLSTATE", "already exists", "Config.", "ExpressTable", "Table:"} {
					if strings.Contains(err.Error(), bad) {
						t.Errorf("error %q says %q", err, bad)
					}
				}
			})
		}
	}
}

func TestExpressImportConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string // variables with a problem
	}{
		{"unset", map[string]string{}, nil},
		{"set", map[string]string{"USE_POSTGRES": "true", "DATABASE_URL": "postgres://db/app", "SESSION_TABLE": "go_session", "SESSION_EXPRESS_TABLE": "session"}, nil},
		{"same table", map[string]string{"USE_POSTGRES": "true", "DATABASE_URL": "postgres://db/app", "SESSION_EXPRESS_TABLE": "session"}, []string{"SESSION_TABLE"}},
		{"memory store", map[string]string{"SESSION_TABLE": "go_session", "SESSION_EXPRESS_TABLE": "session"}, []string{"SESSION_EXPRESS_TABLE"}},
		{"bad names", map[string]string{"USE_POSTGRES": "true", "DATABASE_URL": "postgres://db/app", "SESSION_TABLE": "go_session",
			"SESSION_EXPRESS_TABLE": "a.b.c", "SESSION_EXPRESS_COOKIE": "connect sid"}, []string{"SESSION_EXPRESS_COOKIE", "SESSION_EXPRESS_TABLE"}},
		{"same cookie name", map[string]string{"USE_POSTGRES": "true", "DATABASE_URL": "postgres://db/app", "SESSION_TABLE": "go_session", "SESSION_EXPRESS_TABLE": "session",
			"SESSION_COOKIE_NAME": "connect.sid"}, []string{"SESSION_COOKIE_NAME"}},
		{"settings without the table", map[string]string{"SESSION_EXPRESS_COOKIE": "sid", "SESSION_EXPRESS_TIMEZONE": "Etc/UTC", "SESSION_EXPRESS_COOKIE_DOMAIN": "example.com",
			"SESSION_EXPRESS_SECRET": "keyboard cat"},
			[]string{"SESSION_EXPRESS_COOKIE", "SESSION_EXPRESS_COOKIE_DOMAIN", "SESSION_EXPRESS_SECRET", "SESSION_EXPRESS_TIMEZONE"}},
		// Production refuses the Node app's weak secret as a secret of
		// this library's, and accepts it where it verifies connect.sid
		// only.
		{"production, the Node app's weak secret kept apart", production(map[string]string{"SESSION_EXPRESS_SECRET": "keyboard cat"}), nil},
		{"production, the Node app's weak secret as a previous one", production(map[string]string{"SESSION_SECRET_PREVIOUS": "keyboard cat"}), []string{"SESSION_SECRET_PREVIOUS"}},
		{"tokens in a header only", production(map[string]string{"SESSION_TOKEN_SOURCE": "header"}), []string{"SESSION_TOKEN_SOURCE"}},
		{"an empty express secret", production(map[string]string{"SESSION_EXPRESS_SECRET": "keyboard cat,"}), []string{"SESSION_EXPRESS_SECRET"}},
	}
	for _, tt := range tests {
		cfg, err := session.ConfigFromLookup(lookupFrom(tt.env))
		if got := problemVariables(err); !slicesEqual(got, tt.want) {
			t.Errorf("%s: problems with %v, want %v: %v", tt.name, got, tt.want, err)
		}
		if tt.name == "production, the Node app's weak secret as a previous one" && (err == nil || !strings.Contains(err.Error(), "move it to SESSION_EXPRESS_SECRET")) {
			t.Errorf("%s: %v; want the fix to name SESSION_EXPRESS_SECRET", tt.name, err)
		}
		if tt.name == "set" && (cfg.ExpressTable != "session" || cfg.ExpressCookieName != "") {
			t.Errorf("set: ExpressTable %q, ExpressCookieName %q", cfg.ExpressTable, cfg.ExpressCookieName)
		}
	}
}

// production is a production configuration moving from express-session,
// with a strong secret, and extra on top.
func production(extra map[string]string) map[string]string {
	env := map[string]string{"NODE_ENV": "production", "USE_POSTGRES": "true", "DATABASE_URL": "postgres://db/app", "SESSION_TABLE": "go_session",
		"SESSION_EXPRESS_TABLE": "session", "SESSION_SECRET": "7f3kQ9xLw2VbN8mZr4TcY6pHj1sDg5Ue0aKoWiEqRtXy"}
	maps.Copy(env, extra)
	return env
}

// TestExpressSecretsVerifyExpressCookiesOnly: a secret in
// SESSION_EXPRESS_SECRET moves express-session's users over, and verifies
// no cookie of this library's, so a weak Node secret never becomes a key
// to the new sessions.
func TestExpressSecretsVerifyExpressCookiesOnly(t *testing.T) {
	t.Parallel()
	e := newExpressTables(t)
	strong := startExpressApp(t, e, session.Config{Secret: "the Go app's own secret, strong and 32+ bytes", ExpressSecrets: []string{expressSecret}}, appHandler())
	weak := startExpressApp(t, e, session.Config{Secret: expressSecret}, appHandler())
	expires := time.Now().Add(24 * time.Hour)
	e.insert(t, "sid-ada", expressSess("ada", expires), expires)
	e.insert(t, "sid-bob", expressSess("bob", expires), expires)

	resp, body := strong.get(t, "/whoami", "connect.sid="+nodetest.ConnectSID("sid-ada", expressSecret))
	if body != "ada" || setCookie(resp, "session") == nil {
		t.Fatalf("connect.sid signed with the express secret: whoami %q, cookies %v; want ada, moved to a new cookie", body, resp.Header["Set-Cookie"])
	}
	// A cookie of this library's, signed with the Node app's secret (by an
	// instance that signs with it), for a session in the same table.
	resp, _ = weak.get(t, "/whoami", "connect.sid="+nodetest.ConnectSID("sid-bob", expressSecret))
	forged := setCookie(resp, "session")
	if forged == nil {
		t.Fatal("the instance signing with the Node app's secret set no cookie")
	}
	if _, body := weak.get(t, "/whoami", "session="+forged.Value); body != "bob" {
		t.Fatalf("control: the signing instance reads its own cookie as %q, want bob", body)
	}
	if _, body := strong.get(t, "/whoami", "session="+forged.Value); body != "" {
		t.Errorf("a cookie of this library's signed with an express secret was accepted: whoami %q", body)
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// TestNewRefusesABrokenImport: what New can only check against the
// database, it checks at start-up, naming the variable and the fix.
func TestNewRefusesABrokenImport(t *testing.T) {
	t.Parallel()
	e := newExpressTables(t)
	pgtest.Exec(t, "CREATE TABLE "+pgx.Identifier{e.schema, "other"}.Sanitize()+" (id serial PRIMARY KEY, title text)")
	store := newPostgresStore(t, session.PostgresOptions{Table: e.table})
	scoped := pgtest.Config(t, pgtest.URL(t))
	scoped.ConnConfig.RuntimeParams["search_path"] = e.schema
	onSearchPath, err := session.NewPostgresStore(t.Context(), pgtest.NewPool(t, scoped), session.PostgresOptions{Table: "go_session"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		cfg   session.Config
		store session.Store
		want  string
	}{
		{"missing table", session.Config{ExpressTable: e.schema + ".nothing"}, store, "SESSION_EXPRESS_TABLE names " + pgx.Identifier{e.schema, "nothing"}.Sanitize() + ", which does not exist"},
		{"not connect-pg-simple's", session.Config{ExpressTable: e.schema + ".other"}, store, "which is not connect-pg-simple's table (it has the columns id integer, title text"},
		{"this library's own", session.Config{ExpressTable: e.table}, store, "the table SESSION_EXPRESS_TABLE imports from"},
		{"this library's own, unqualified", session.Config{Table: "go_session", ExpressTable: e.table}, onSearchPath, "SESSION_EXPRESS_TABLE and SESSION_TABLE both name"},
		{"unknown zone", session.Config{ExpressTable: e.legacy, ExpressTimeZone: "Mars/Olympus_Mons"}, store, `SESSION_EXPRESS_TIMEZONE is "Mars/Olympus_Mons", which PostgreSQL does not know`},
		{"not PostgreSQL", session.Config{ExpressTable: e.legacy}, session.NewMemoryStoreOnClock(time.Now), "sessions are not stored in PostgreSQL"},
		{"wrapped store", session.Config{ExpressTable: e.legacy}, newSpyStore(store), "pass the store NewPostgresStore returned to WithStore itself"},
	}
	for _, tt := range tests {
		tt.cfg.Table, tt.cfg.Secret = cmp.Or(tt.cfg.Table, e.table), expressSecret
		_, err := session.New(t.Context(), tt.cfg, session.WithStore(tt.store), session.WithLogger(discardLogger))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v; want an error containing %q", tt.name, err, tt.want)
		}
	}
	// With SESSION_AUTO_MIGRATE=false the ledger must be there already.
	_, err = session.New(t.Context(), session.Config{Table: e.table, ExpressTable: e.legacy, ManualMigrations: true, Secret: expressSecret},
		session.WithStore(store), session.WithLogger(discardLogger))
	if err == nil || !strings.Contains(err.Error(), `run "sessionctl migrate" with SESSION_EXPRESS_TABLE set`) {
		t.Errorf("manual migrations without the ledger: New = %v", err)
	}
}
