package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session/internal/nodetest"
	"github.com/smartscheduler/session/internal/pgtest"
)

// These tests run examples/express-legacy, the real express-session and
// connect-pg-simple, against the test PostgreSQL, and check express.go
// against the cookies and rows it leaves.

// expressLegacy is one schema of the test server that express-legacy apps
// share, as one database is shared by the Node app's instances.
type expressLegacy struct {
	schema string
	// goPool reads the rows with a TimeZone that no Node app here uses,
	// so a query that depended on the reader's zone would fail.
	goPool *pgxpool.Pool
}

// expressGoTimeZone is the TimeZone of the Go side's connections: one no
// Node app in these tests uses, 9 hours from UTC and without daylight
// saving time.
const expressGoTimeZone = "Asia/Tokyo"

// newExpressLegacy skips or fails (see nodetest.Require and pgtest.URL)
// without Node or PostgreSQL, and gives the test a fresh schema.
func newExpressLegacy(t *testing.T) *expressLegacy {
	t.Helper()
	nodetest.Require(t)
	cfg := pgtest.Config(t, pgtest.URL(t))
	cfg.ConnConfig.RuntimeParams["timezone"] = expressGoTimeZone
	return &expressLegacy{
		schema: strings.TrimSuffix(pgtest.Schema(t), ".session"),
		goPool: pgtest.NewPool(t, cfg),
	}
}

// start runs an express-legacy app on the schema, with env added to its
// environment.
func (e *expressLegacy) start(t *testing.T, env map[string]string) *nodetest.App {
	t.Helper()
	full := map[string]string{"DATABASE_URL": pgtest.URL(t), "SESSION_SCHEMA": e.schema}
	maps.Copy(full, env)
	return nodetest.StartExpressApp(t, full)
}

// roleWithTimeZone creates a role, dropped when the test ends, that may
// create tables in the schema and whose sessions default to zone, and
// returns the test server's URL for it.
func (e *expressLegacy) roleWithTimeZone(t *testing.T, zone string) string {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("the test server's address must be a postgres:// URL for node-postgres, not %q", pgtest.URL(t))
	}
	role := e.schema + "_node"
	password := role // authenticates under password methods; trust ignores it
	quoted := pgx.Identifier{role}.Sanitize()
	pgtest.Exec(t, "CREATE ROLE "+quoted+" LOGIN PASSWORD '"+password+"'")
	t.Cleanup(func() {
		pgtest.Exec(t, "DROP OWNED BY "+quoted)
		pgtest.Exec(t, "DROP ROLE "+quoted)
	})
	pgtest.Exec(t, "ALTER ROLE "+quoted+" SET TimeZone = '"+zone+"'")
	pgtest.Exec(t, "GRANT USAGE, CREATE ON SCHEMA "+pgx.Identifier{e.schema}.Sanitize()+" TO "+quoted)
	u.User = url.UserPassword(role, password)
	return u.String()
}

// expressURLWithOptions is the test server's URL with options=options
// added, which node-postgres sends at connect as libpq does.
func expressURLWithOptions(t *testing.T, options string) string {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("options", options)
	u.RawQuery = q.Encode()
	return u.String()
}

// table is the quoted name of connect-pg-simple's table.
func (e *expressLegacy) table() string {
	return pgx.Identifier{e.schema, "session"}.Sanitize()
}

// expressRow is a connect-pg-simple row as the import reads it.
type expressRow struct {
	sess []byte
	// expire is the expire column through expressRowQuery: an instant.
	expire time.Time
}

// row reads sid's row with expressRowQuery, taking expire to be in zone;
// found is false when there is no live row.
func (e *expressLegacy) row(t *testing.T, sid, zone string) (row expressRow, found bool) {
	t.Helper()
	err := e.goPool.QueryRow(context.Background(), fmt.Sprintf(expressRowQuery, e.table()), sid, zone).Scan(&row.sess, &row.expire)
	if errors.Is(err, pgx.ErrNoRows) {
		return row, false
	}
	if err != nil {
		t.Fatalf("read row %q: %v", sid, err)
	}
	return row, true
}

// mustRow is row for a row that must be there.
func (e *expressLegacy) mustRow(t *testing.T, sid, zone string) expressRow {
	t.Helper()
	row, found := e.row(t, sid, zone)
	if !found {
		t.Fatalf("no live row for sid %q reading expire in %s", sid, zone)
	}
	return row
}

// naiveExpire reads sid's expire the way the trap reads it: scanned
// straight into a time.Time, which pgx does by taking the wall-clock time
// to be UTC.
func (e *expressLegacy) naiveExpire(t *testing.T, sid string) time.Time {
	t.Helper()
	var expire time.Time
	if err := e.goPool.QueryRow(context.Background(), "SELECT expire FROM "+e.table()+" WHERE sid = $1", sid).Scan(&expire); err != nil {
		t.Fatalf("read expire of %q: %v", sid, err)
	}
	return expire
}

// expressNodeDefaultZone is the TimeZone node-postgres connections get
// from the test server: that of a connection which sends none at start-up,
// as node-postgres sends none (pgx would take PGTZ or PGOPTIONS from the
// environment, so they are removed).
func expressNodeDefaultZone(t *testing.T) string {
	t.Helper()
	cfg := pgtest.Config(t, pgtest.URL(t)).ConnConfig
	delete(cfg.RuntimeParams, "timezone")
	delete(cfg.RuntimeParams, "options")
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var zone string
	if err := conn.QueryRow(ctx, "SHOW TimeZone").Scan(&zone); err != nil {
		t.Fatal(err)
	}
	return zone
}

// expressState is what express-legacy's /login and /state answer: the
// session id and req.session, which JSON.stringify writes as it writes the
// sess column.
type expressState struct {
	SID     string          `json:"sid"`
	Session json.RawMessage `json:"session"`
}

// session parses the state's session as parseExpressSession parses a row.
func (s expressState) session(t *testing.T) expressSession {
	t.Helper()
	sess, err := parseExpressSession(s.Session)
	if err != nil {
		t.Fatalf("parse /state's session %s: %v", s.Session, err)
	}
	return sess
}

// newExpressBrowser is a client with a cookie jar. The jar keys cookies by
// host, not port, so one browser carries connect.sid to every app on
// 127.0.0.1, as a browser does to the instances behind one site.
func newExpressBrowser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

// expressCall sends a request, fails the test unless express answers 200
// with JSON, decodes the answer into out, and returns the connect.sid the
// response set, or nil.
func expressCall(t *testing.T, c *http.Client, method, url string, header http.Header, out any) *http.Cookie {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, header)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, body.Bytes())
	}
	if err := json.Unmarshal(body.Bytes(), out); err != nil {
		t.Fatalf("%s %s: %v in %s", method, url, err, body.Bytes())
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "connect.sid" {
			return ck
		}
	}
	return nil
}

// expressJarCookie is the connect.sid value the browser holds for app,
// exactly as express set it.
func expressJarCookie(t *testing.T, c *http.Client, app *nodetest.App) string {
	t.Helper()
	u, err := url.Parse(app.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "connect.sid" {
			return ck.Value
		}
	}
	t.Fatalf("the browser holds no connect.sid for %s", app.URL())
	return ""
}

// expressCeilSecond is t rounded up to the second, as connect-pg-simple
// rounds the expiry it writes.
func expressCeilSecond(t time.Time) time.Time {
	if s := t.Truncate(time.Second); !s.Equal(t) {
		return s.Add(time.Second)
	}
	return t
}

// expressWithin reports whether got lies in [from, to].
func expressWithin(got, from, to time.Time) bool {
	return !got.Before(from) && !got.After(to)
}

func TestExpressNodeSignIn(t *testing.T) {
	t.Parallel()
	const secret = "keyboard cat"
	e := newExpressLegacy(t)
	zone := expressNodeDefaultZone(t)
	app := e.start(t, map[string]string{"SESSION_SECRET": secret})

	tests := []struct {
		name, query, user string
		remember          bool
	}{
		{"remembered", "user=ada&remember=1", "ada", true},
		{"browser session", "user=grace&remember=0", "grace", false},
		{"numeric user", "user=42&numeric=1&remember=1", "42", true},
		{"unicode user", "user=" + url.QueryEscape("Zoë 🌍") + "&remember=0", "Zoë 🌍", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newExpressBrowser(t)
			before := time.Now()
			var login expressState
			loginCookie := expressCall(t, c, "POST", app.URL()+"/login?"+tt.query, nil, &login)
			var visit struct{ Visits int }
			visitCookie := expressCall(t, c, "GET", app.URL()+"/visit", nil, &visit)
			after := time.Now()
			if visit.Visits != 2 {
				t.Errorf("/visit counted %d, want 2", visit.Visits)
			}

			wire := expressJarCookie(t, c, app)
			sid, ok := verifyExpressCookie(wire, []string{secret})
			if !ok || sid != login.SID {
				t.Fatalf("verifyExpressCookie(%q) = %q, %v; want express's sid %q", wire, sid, ok, login.SID)
			}
			if sid, ok := verifyExpressCookie(wire, []string{"new secret", secret}); !ok || sid != login.SID {
				t.Errorf("with the secret second: verifyExpressCookie = %q, %v", sid, ok)
			}
			if _, ok := verifyExpressCookie(wire, []string{"new secret"}); ok {
				t.Error("verified with a secret express did not use")
			}
			if got := encodeURIComponent(signExpressCookie(sid, secret)); got != wire {
				t.Errorf("signExpressCookie+encodeURIComponent = %q; express set %q", got, wire)
			}

			row := e.mustRow(t, sid, zone)
			if !bytes.HasPrefix(row.sess, []byte(`{"cookie":{`)) {
				t.Errorf("sess does not start with the cookie object: %s", row.sess)
			}
			s, err := parseExpressSession(row.sess)
			if err != nil {
				t.Fatalf("parseExpressSession(%s): %v", row.sess, err)
			}
			if s.user != tt.user {
				t.Errorf("user = %q, want %q", s.user, tt.user)
			}
			if got := string(s.values["visits"]); got != "2" {
				t.Errorf("values[visits] = %s, want 2", got)
			}
			var flash map[string][]string
			if err := json.Unmarshal(s.values["flash"], &flash); err != nil || !slices.Equal(flash["info"], []string{"Welcome back, " + tt.user}) {
				t.Errorf("flash = %s (%v); want connect-flash's {info: [Welcome back, %s]}", s.values["flash"], err, tt.user)
			}
			if s.cookiePath != "/" || s.cookieDomain != "" {
				t.Errorf("cookie path %q, domain %q; want /, none", s.cookiePath, s.cookieDomain)
			}
			if loginCookie == nil || loginCookie.Path != s.cookiePath || loginCookie.Domain != s.cookieDomain {
				t.Errorf("/login set connect.sid %v; want the path and domain of sess.cookie, %q and %q", loginCookie, s.cookiePath, s.cookieDomain)
			}
			if s.persistent() != tt.remember {
				t.Fatalf("persistent = %v for remember = %v (sess %s)", s.persistent(), tt.remember, row.sess)
			}

			if tt.remember {
				// Modified, so /visit set the cookie again; its Expires has
				// whole seconds.
				if visitCookie == nil || visitCookie.Expires.IsZero() {
					t.Fatalf("/visit set connect.sid %v; want a persistent cookie", visitCookie)
				}
				if d := s.expires.Sub(visitCookie.Expires); d < 0 || d >= time.Second {
					t.Errorf("cookie.expires %v is not within a second of the Set-Cookie's %v", s.expires, visitCookie.Expires)
				}
				const fourteenDays = 14 * 24 * time.Hour
				// Date.now() has whole milliseconds.
				if !expressWithin(s.expires, before.Truncate(time.Millisecond).Add(fourteenDays), after.Add(fourteenDays)) {
					t.Errorf("cookie.expires %v, want 14 days after the request, in [%v, %v]", s.expires, before.Add(fourteenDays), after.Add(fourteenDays))
				}
				if want := expressCeilSecond(s.expires); !row.expire.Equal(want) {
					t.Errorf("row expire %v, want cookie.expires rounded up, %v", row.expire, want)
				}
				if got := s.expiry(row.expire); !got.Equal(s.expires) {
					t.Errorf("expiry = %v, want the cookie's %v", got, s.expires)
				}
			} else {
				if loginCookie == nil || !loginCookie.Expires.IsZero() || loginCookie.MaxAge != 0 {
					t.Fatalf("/login set connect.sid %v; want a browser-session cookie", loginCookie)
				}
				// connect-pg-simple's default ttl, from the last write.
				const ttl = 24 * time.Hour
				if !expressWithin(row.expire, before.Add(ttl).Truncate(time.Second), expressCeilSecond(after.Add(ttl))) {
					t.Errorf("row expire %v, want a day after the request, in [%v, %v]", row.expire, before.Add(ttl), after.Add(ttl))
				}
				if got := s.expiry(row.expire); !got.Equal(row.expire) {
					t.Errorf("expiry = %v, want the row's %v", got, row.expire)
				}
			}

			var logout struct{ OK bool }
			expressCall(t, c, "POST", app.URL()+"/logout", nil, &logout)
			if _, found := e.row(t, sid, zone); found {
				t.Error("the row outlived express's destroy")
			}
		})
	}
}

func TestExpressNodeSecretRotation(t *testing.T) {
	t.Parallel()
	e := newExpressLegacy(t)
	zone := expressNodeDefaultZone(t)
	before := e.start(t, map[string]string{"SESSION_SECRET": "old secret"})
	c := newExpressBrowser(t)
	var login expressState
	expressCall(t, c, "POST", before.URL()+"/login?user=ada&remember=1", nil, &login)
	oldWire := expressJarCookie(t, c, before)

	// The deploy that rotates: the new secret signs, the old one verifies.
	secrets := []string{"new secret", "old secret"}
	after := e.start(t, map[string]string{"SESSION_SECRET": strings.Join(secrets, ",")})
	var state expressState
	expressCall(t, c, "GET", after.URL()+"/state", nil, &state)
	if state.SID != login.SID || state.session(t).user != "ada" {
		t.Fatalf("after rotation express answers sid %q, session %s; want the signed-in %q", state.SID, state.Session, login.SID)
	}
	if sid, ok := verifyExpressCookie(oldWire, secrets); !ok || sid != login.SID {
		t.Errorf("verifyExpressCookie(old cookie, new+old) = %q, %v; express accepted it as %q", sid, ok, login.SID)
	}
	if _, ok := verifyExpressCookie(oldWire, secrets[:1]); ok {
		t.Error("the old secret's cookie verified with the new secret alone")
	}

	// A change makes express re-issue the cookie, signed with the new secret.
	var visit struct{ Visits int }
	expressCall(t, c, "GET", after.URL()+"/visit", nil, &visit)
	newWire := expressJarCookie(t, c, after)
	if newWire == oldWire {
		t.Fatal("express did not re-sign the cookie after a change")
	}
	if sid, ok := verifyExpressCookie(newWire, secrets[:1]); !ok || sid != login.SID {
		t.Errorf("verifyExpressCookie(re-signed cookie, new) = %q, %v; want %q", sid, ok, login.SID)
	}
	if _, ok := verifyExpressCookie(newWire, secrets[1:]); ok {
		t.Error("the re-signed cookie verified with the old secret")
	}
	if want := encodeURIComponent(signExpressCookie(login.SID, "new secret")); newWire != want {
		t.Errorf("express re-signed as %q; signExpressCookie gives %q", newWire, want)
	}
	s, err := parseExpressSession(e.mustRow(t, login.SID, zone).sess)
	if err != nil || s.user != "ada" || string(s.values["visits"]) != "2" {
		t.Errorf("row after rotation: user %q, visits %s, %v", s.user, s.values["visits"], err)
	}
}

// TestExpressNodeExpireTimeZone backs expressRowQuery's doc comment: the
// row's expire is wall-clock time in the Node app's PostgreSQL TimeZone,
// whatever Node's own TZ, and "expire AT TIME ZONE" that zone is the
// instant however the reader's connection is set.
func TestExpressNodeExpireTimeZone(t *testing.T) {
	t.Parallel()
	defaultZone := expressNodeDefaultZone(t)
	tests := []struct {
		name string
		env  map[string]string
		// zone is the Node app's PostgreSQL TimeZone, which the import
		// must be told. misreadEdge is where reading expire as UTC instead
		// goes wrong: west of UTC it signs out a user an hour from expiry,
		// east of it it keeps one an hour past ("" to skip the check).
		zone, misreadEdge string
		// roleZone, when set, runs the app as a role of its own whose
		// default TimeZone is roleZone (ALTER ROLE ... SET TimeZone).
		roleZone string
	}{
		{"Node TZ=UTC", map[string]string{"TZ": "UTC"}, defaultZone, "", ""},
		{"Node TZ=America/New_York", map[string]string{"TZ": "America/New_York"}, defaultZone, "", ""},
		{"PGOPTIONS=-c TimeZone=America/New_York, Node TZ=UTC",
			map[string]string{"TZ": "UTC", "PGOPTIONS": "-c TimeZone=America/New_York"},
			"America/New_York", "1 hour", ""},
		{"options=-c TimeZone=Asia/Kolkata in DATABASE_URL, Node TZ=America/New_York",
			map[string]string{"TZ": "America/New_York", "DATABASE_URL": expressURLWithOptions(t, "-c TimeZone=Asia/Kolkata")},
			"Asia/Kolkata", "-1 hour", ""},
		{"role's default TimeZone=Pacific/Auckland, Node TZ=America/New_York",
			map[string]string{"TZ": "America/New_York"},
			"Pacific/Auckland", "-1 hour", "Pacific/Auckland"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExpressLegacy(t)
			env := map[string]string{"SESSION_SECRET": "s"}
			maps.Copy(env, tt.env)
			if tt.roleZone != "" {
				env["DATABASE_URL"] = e.roleWithTimeZone(t, tt.roleZone)
			}
			app := e.start(t, env)

			// Remembered: the row holds the cookie's expiry.
			c := newExpressBrowser(t)
			var login expressState
			expressCall(t, c, "POST", app.URL()+"/login?user=ada&remember=1", nil, &login)
			row := e.mustRow(t, login.SID, tt.zone)
			// The stored cookie.expires, not the one the handler reported:
			// express-session touches the cookie again as the headers
			// leave, a few milliseconds later, sometimes into the next
			// second, and stores that.
			stored, err := parseExpressSession(row.sess)
			if err != nil {
				t.Fatal(err)
			}
			cookieExpires := stored.expires
			if reported := login.session(t).expires; cookieExpires.Before(reported) || cookieExpires.Sub(reported) > 5*time.Second {
				t.Errorf("stored cookie.expires %v, want the reported %v or a moment after", cookieExpires, reported)
			}
			if want := expressCeilSecond(cookieExpires); !row.expire.Equal(want) {
				t.Errorf("expire AT TIME ZONE %s = %v, want cookie.expires rounded up, %v", tt.zone, row.expire, want)
			}
			if tt.misreadEdge != "" {
				loc, err := time.LoadLocation(tt.zone)
				if err != nil {
					t.Fatal(err)
				}
				_, offset := row.expire.In(loc).Zone()
				naive := e.naiveExpire(t, login.SID)
				if got := naive.Sub(row.expire); got != time.Duration(offset)*time.Second {
					t.Errorf("expire read as UTC is off by %v, want the zone's offset %ds: the trap is not what the doc says", got, offset)
				}
			}

			// Browser session: the row holds the last write plus a day.
			c = newExpressBrowser(t)
			before := time.Now()
			expressCall(t, c, "POST", app.URL()+"/login?user=grace&remember=0", nil, &login)
			after := time.Now()
			row = e.mustRow(t, login.SID, tt.zone)
			const ttl = 24 * time.Hour
			if !expressWithin(row.expire, before.Add(ttl).Truncate(time.Second), expressCeilSecond(after.Add(ttl))) {
				t.Errorf("expire AT TIME ZONE %s = %v, want a day after the request, in [%v, %v]", tt.zone, row.expire, before.Add(ttl), after.Add(ttl))
			}

			// At the edge: an hour from expiry, then an hour past it, set as
			// the Node app's connection would see it. Node and the import
			// must agree on who is signed in.
			for _, edge := range []struct {
				offset string
				live   bool
			}{{"1 hour", true}, {"-1 hour", false}} {
				pgtest.Exec(t, "UPDATE "+e.table()+" SET expire = (now() + $1::interval) AT TIME ZONE $2 WHERE sid = $3", edge.offset, tt.zone, login.SID)
				if _, found := e.row(t, login.SID, tt.zone); found != edge.live {
					t.Errorf("expire now %s: expressRowQuery found the row: %v, want %v", edge.offset, found, edge.live)
				}
				if tt.misreadEdge != "" {
					_, found := e.row(t, login.SID, "UTC")
					if wrong := edge.offset == tt.misreadEdge; (found != edge.live) != wrong {
						t.Errorf("expire now %s: reading it as UTC found the row: %v; want that to be wrong: %v", edge.offset, found, wrong)
					}
				}
				// Last, since express touches the row when it loads it.
				var state expressState
				expressCall(t, c, "GET", app.URL()+"/state", nil, &state)
				if signedIn := state.SID == login.SID && state.session(t).user == "grace"; signedIn != edge.live {
					t.Errorf("expire now %s: express signed in: %v, want %v", edge.offset, signedIn, edge.live)
				}
			}
		})
	}

	// The doc comment's claim about the autumn change: two instants an hour
	// apart are one wall-clock time, read back as the later.
	t.Run("DST fall-back", func(t *testing.T) {
		cfg := pgtest.Config(t, pgtest.URL(t))
		cfg.ConnConfig.RuntimeParams["timezone"] = "America/New_York"
		pool := pgtest.NewPool(t, cfg)
		first := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC) // 01:30 EDT
		second := first.Add(time.Hour)                         // 01:30 EST
		for _, instant := range []time.Time{first, second} {
			var wall string
			var back time.Time
			err := pool.QueryRow(context.Background(),
				"SELECT to_timestamp($1::float8)::timestamp::text, to_timestamp($1::float8)::timestamp AT TIME ZONE 'America/New_York'",
				instant.Unix()).Scan(&wall, &back)
			if err != nil {
				t.Fatal(err)
			}
			if wall != "2026-11-01 01:30:00" || !back.Equal(second) {
				t.Errorf("%v stored as %q, read back as %v; want 2026-11-01 01:30:00 and %v", instant, wall, back, second)
			}
		}
	})
}

// TestExpressNodeAgreesOnCookies sends express cookies, genuine and
// hostile, and checks that verifyExpressCookie accepts exactly those that
// express signs in with, but for its documented refusals. Each cookie's
// would-be sid gets a copy of a signed-in row, so express's answer shows
// whether it accepted the cookie.
func TestExpressNodeAgreesOnCookies(t *testing.T) {
	t.Parallel()
	const secret = "keyboard cat"
	e := newExpressLegacy(t)
	app := e.start(t, map[string]string{"SESSION_SECRET": secret})
	var login expressState
	expressCall(t, newExpressBrowser(t), "POST", app.URL()+"/login?user=ada&remember=1", nil, &login)
	sid := login.SID
	signed := signExpressCookie(sid, secret)
	wire := encodeURIComponent(signed)
	sign := func(id string) string { return signExpressCookie(id, secret) }
	long := strings.Repeat("a", maxExpressCookie)

	tests := []struct {
		name, value string
		// claims is the sid express would look up if it accepted value.
		claims string
		// refusal, when set, is why verifyExpressCookie refuses a cookie
		// express accepts (see its doc comment).
		refusal string
	}{
		{name: "as express set it", value: wire, claims: sid},
		{name: "unencoded", value: signed, claims: sid},
		{name: "lower-case escapes", value: strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(wire, "%3A", "%3a"), "%2F", "%2f"), "%2B", "%2b"), claims: sid},
		{name: "escaped unreserved bytes", value: strings.Replace(wire, "s%3A", "%73%3A", 1), claims: sid},
		{name: "an id of the app's genid", value: encodeURIComponent(sign("ünï.💥.1")), claims: "ünï.💥.1"},
		{name: "another secret", value: encodeURIComponent(signExpressCookie(sid, "other")), claims: sid},
		{name: "padded signature", value: wire + "%3D", claims: sid},
		{name: "dots after the signature", value: wire + ".x", claims: signed[2:]},
		{name: "no s: prefix", value: signed[2:], claims: sid},
		{name: "empty id", value: encodeURIComponent(sign("")), claims: ""},
		{name: "raw UTF-8 id, signed over its UTF-8", value: sign("ünï"), claims: "ünï"},
		{name: "raw %-escape in the id, signed over the raw text", value: sign("a%ZZ"), claims: "a%ZZ",
			refusal: "a malformed %-escape, where express falls back to the raw text"},
		{name: "escaped invalid UTF-8 in the id, signed over the raw text", value: sign("%C3%28"), claims: "%C3%28",
			refusal: "invalid UTF-8 after decoding, where express falls back to the raw text"},
		{name: "over maxExpressCookie", value: encodeURIComponent(sign(long)), claims: long,
			refusal: "a value over maxExpressCookie, which no browser keeps"},
	}
	for _, tt := range tests {
		if tt.claims != "" && tt.claims != sid {
			pgtest.Exec(t, "INSERT INTO "+e.table()+" (sid, sess, expire) SELECT $1, sess, expire FROM "+e.table()+" WHERE sid = $2", tt.claims, sid)
		}
		var state expressState
		expressCall(t, &http.Client{Timeout: 30 * time.Second}, "GET", app.URL()+"/state", http.Header{"Cookie": {"connect.sid=" + tt.value}}, &state)
		expressAccepts := state.session(t).user == "ada"
		if expressAccepts && state.SID != tt.claims {
			t.Errorf("%s: express signed in as sid %q, want %q", tt.name, state.SID, tt.claims)
		}
		got, ok := verifyExpressCookie(tt.value, []string{secret})
		switch {
		case tt.refusal != "":
			if !expressAccepts || ok {
				t.Errorf("%s: express accepts: %v, verifyExpressCookie: %v; want the documented difference (%s)", tt.name, expressAccepts, ok, tt.refusal)
			}
		case ok != expressAccepts:
			t.Errorf("%s: verifyExpressCookie(%q) ok = %v, express accepts: %v", tt.name, tt.value, ok, expressAccepts)
		case ok && got != state.SID:
			t.Errorf("%s: verifyExpressCookie = %q, express's sid %q", tt.name, got, state.SID)
		}
	}
}
