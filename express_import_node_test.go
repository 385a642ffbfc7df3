package session_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/nodetest"
	"github.com/smartscheduler/session/internal/pgtest"
)

// These tests sign in on examples/express-legacy, the real express-session
// and connect-pg-simple, and take the same browser to an app on this
// library sharing its database.

// nodeSide is the Node app on a schema of its own, with connect-pg-simple's
// table in it.
type nodeSide struct {
	app    *nodetest.App
	schema string
}

// startNode runs express-legacy on a fresh schema with env added.
func startNode(t *testing.T, env map[string]string) *nodeSide {
	t.Helper()
	nodetest.Require(t)
	schema := schemaOf(pgtest.Schema(t))
	full := map[string]string{"DATABASE_URL": pgtest.URL(t), "SESSION_SCHEMA": schema}
	for k, v := range env {
		full[k] = v
	}
	return &nodeSide{app: nodetest.StartExpressApp(t, full), schema: schema}
}

// legacy is connect-pg-simple's table, quoted; config is the two tables as
// SESSION_EXPRESS_TABLE and SESSION_TABLE name them.
func (n *nodeSide) legacy() string           { return pgx.Identifier{n.schema, "session"}.Sanitize() }
func (n *nodeSide) config() (string, string) { return n.schema + ".session", n.schema + ".go_session" }

// login signs a new browser in on Node and returns it.
func (n *nodeSide) login(t *testing.T, query string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	// express-session ends a response only once the session is saved:
	// reading each to its end makes sure the row is written.
	resp, err := c.Post(n.app.URL()+"/login?"+query, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Node /login?%s: %s %s, %v", query, resp.Status, body, err)
	}
	fetchOK(t, c, n.app.URL()+"/visit")
	return c
}

// sid is the session id of the browser's connect.sid, as the Node table
// keys it.
func (n *nodeSide) sid(t *testing.T, c *http.Client) string {
	t.Helper()
	u, _ := url.Parse(n.app.URL())
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "connect.sid" {
			v, err := url.QueryUnescape(ck.Value)
			if err != nil {
				t.Fatal(err)
			}
			v = strings.TrimPrefix(v, "s:")
			return v[:strings.LastIndexByte(v, '.')]
		}
	}
	t.Fatal("the browser holds no connect.sid")
	return ""
}

func (n *nodeSide) rows(t *testing.T, sid string) int {
	t.Helper()
	var count int
	if err := pgxQueryRow(t, "SELECT count(*) FROM "+n.legacy()+" WHERE sid = $1", sid).Scan(&count); err != nil {
		t.Fatal(err)
	}
	return count
}

// goSide is the app on this library, sharing the Node app's database.
type goSide struct {
	*httptest.Server
	manager *session.Manager
	logs    *syncBuffer
}

// goTimeZone is the Go side's connection TimeZone when a test sets one
// apart from the Node app's: 9 hours from UTC, without daylight saving.
const goTimeZone = "Asia/Tokyo"

// startGo starts the app on n's database with cfg, its Table and
// ExpressTable defaulting to n's; zone, when set, is its connections'
// TimeZone.
func startGo(t *testing.T, n *nodeSide, cfg session.Config, zone string) *goSide {
	t.Helper()
	legacy, table := n.config()
	if cfg.Table == "" {
		cfg.Table = table
	}
	if cfg.ExpressTable == "" {
		cfg.ExpressTable = legacy
	}
	poolCfg := pgtest.Config(t, pgtest.URL(t))
	if zone != "" {
		poolCfg.ConnConfig.RuntimeParams["timezone"] = zone
	}
	store, err := session.NewPostgresStore(t.Context(), pgtest.NewPool(t, poolCfg), session.PostgresOptions{Table: cfg.Table})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	m, err := session.New(t.Context(), cfg, session.WithStore(store),
		session.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatalf("session.New: %v", err)
	}
	srv := httptest.NewServer(m.Handler(appHandler()))
	t.Cleanup(func() {
		srv.Close()
		m.Close()
	})
	return &goSide{Server: srv, manager: m, logs: logs}
}

// stop stops the app, as a restart does.
func (g *goSide) stop() {
	g.Close()
	g.manager.Close()
}

func TestExpressNodeToGo(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"SESSION_SECRET": expressSecret})
	// connect-pg-simple creates its table at its first request: the Go
	// app starts once it is there, as it would in production.
	browser := n.login(t, "user=ada&remember=1")
	g := startGo(t, n, session.Config{Secret: expressSecret}, "")
	sid := n.sid(t, browser)
	u, _ := url.Parse(n.app.URL())
	var connectSIDValue string
	for _, ck := range browser.Jar.Cookies(u) {
		if ck.Name == "connect.sid" {
			connectSIDValue = ck.Value
		}
	}

	resp, body := fetchOK(t, browser, g.URL+"/dump")
	var values map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &values); err != nil {
		t.Fatalf("/dump: %v in %s", err, body)
	}
	for key, want := range map[string]string{"passport": `{"user":"ada"}`, "visits": `2`, "flash": `{"info":["Welcome back, ada"]}`} {
		if got := string(values[key]); got != want {
			t.Errorf("value %s = %s, want %s as express left it", key, got, want)
		}
	}
	if _, ok := values["cookie"]; ok {
		t.Error("express's cookie object was imported as a value")
	}
	native := setCookie(resp, "session")
	if native == nil || native.Expires.IsZero() {
		t.Fatalf("no persistent native cookie: %v", resp.Header["Set-Cookie"])
	}
	if d := time.Until(native.Expires) - 14*24*time.Hour; d > time.Minute || d < -time.Minute {
		t.Errorf("native cookie expires %v, want express's 14 days", native.Expires)
	}
	if ck := setCookie(resp, "connect.sid"); ck == nil || ck.MaxAge >= 0 || ck.Path != "/" {
		t.Errorf("connect.sid not cleared with express's Path: %v", resp.Header["Set-Cookie"])
	}
	if n.rows(t, sid) != 0 {
		t.Error("the Node row is still there")
	}
	if _, body := fetchOK(t, browser, g.URL+"/whoami"); body != "ada" {
		t.Errorf("whoami = %q, want ada", body)
	}
	infos, err := g.manager.UserSessions(t.Context(), "ada")
	if err != nil || len(infos) != 1 {
		t.Fatalf("UserSessions(ada) = %v, %v", infos, err)
	}

	// The replayed connect.sid alone: nothing, and nothing started.
	replay, _ := cookiejar.New(nil)
	replay.SetCookies(u, []*http.Cookie{{Name: "connect.sid", Value: connectSIDValue, Path: "/"}})
	attacker := &http.Client{Jar: replay}
	if resp, body := fetchOK(t, attacker, g.URL+"/visit"); body != "1" || setCookie(resp, "session") != nil {
		t.Errorf("replayed connect.sid: visit %q, cookies %v; want a count of nothing, no session", body, resp.Header["Set-Cookie"])
	}
	if infos, _ := g.manager.UserSessions(t.Context(), "ada"); len(infos) != 1 {
		t.Errorf("ada has %d sessions after the replay", len(infos))
	}

	// A restart of the Go app: the native cookie still signs in.
	g.stop()
	g = startGo(t, n, session.Config{Secret: expressSecret}, "")
	if _, body := fetchOK(t, browser, g.URL+"/whoami"); body != "ada" {
		t.Errorf("after a restart: whoami = %q, want ada", body)
	}
	// Signing out on Go is final: the Node cookie, replayed, finds nothing.
	fetchOK(t, browser, g.URL+"/destroy")
	if _, body := fetchOK(t, attacker, g.URL+"/whoami"); body != "" {
		t.Errorf("after sign-out the connect.sid signs in as %q", body)
	}
}

func TestExpressNodeToGoEdgeCases(t *testing.T) {
	t.Parallel()
	t.Run("browser session in another TimeZone", func(t *testing.T) {
		t.Parallel()
		// The Node app's connection writes expire in New York time; the
		// Go app's connections are in Tokyo, and are told New York.
		n := startNode(t, map[string]string{"SESSION_SECRET": expressSecret, "PGOPTIONS": "-c TimeZone=America/New_York"})
		before := time.Now()
		browser := n.login(t, "user=grace&remember=0")
		g := startGo(t, n, session.Config{Secret: expressSecret, ExpressTimeZone: "America/New_York"}, goTimeZone)
		resp, body := fetchOK(t, browser, g.URL+"/whoami")
		native := setCookie(resp, "session")
		if body != "grace" || native == nil || !native.Expires.IsZero() || native.MaxAge != 0 {
			t.Fatalf("whoami %q, cookie %v; want grace on a browser-session cookie", body, native)
		}
		infos, err := g.manager.UserSessions(t.Context(), "grace")
		if err != nil || len(infos) != 1 {
			t.Fatalf("UserSessions(grace) = %v, %v", infos, err)
		}
		// connect-pg-simple's ttl: a day from the last write.
		if want := before.Add(24 * time.Hour); infos[0].Expiry.Before(want.Add(-2*time.Second)) || infos[0].Expiry.After(want.Add(time.Minute)) {
			t.Errorf("imported deadline %v, want a day from now (%v): expire was read in the wrong zone", infos[0].Expiry, want)
		}
	})
	t.Run("expired row", func(t *testing.T) {
		t.Parallel()
		n := startNode(t, map[string]string{"SESSION_SECRET": expressSecret})
		browser := n.login(t, "user=ada&remember=0")
		g := startGo(t, n, session.Config{Secret: expressSecret}, "")
		sid := n.sid(t, browser)
		pgtest.Exec(t, "UPDATE "+n.legacy()+" SET expire = now() - interval '1 minute' WHERE sid = $1", sid)
		resp, body := fetchOK(t, browser, g.URL+"/whoami")
		if body != "" || setCookie(resp, "session") != nil {
			t.Errorf("expired row: whoami %q, cookies %v; want nobody", body, resp.Header["Set-Cookie"])
		}
		if ck := setCookie(resp, "connect.sid"); ck == nil || ck.MaxAge >= 0 {
			t.Errorf("expired row: connect.sid not cleared: %v", resp.Header["Set-Cookie"])
		}
		if n.rows(t, sid) != 1 {
			t.Error("the expired row was taken: it is left for sessionctl express prune")
		}
		// Its user starts afresh, and may sign in.
		if _, body := fetchOK(t, browser, g.URL+"/login?user=ada"); body != "ok" {
			t.Errorf("login after an expired import: %q", body)
		}
		if _, body := fetchOK(t, browser, g.URL+"/whoami"); body != "ada" {
			t.Errorf("whoami after signing in again: %q", body)
		}
	})
	t.Run("signed with a previous secret", func(t *testing.T) {
		t.Parallel()
		n := startNode(t, map[string]string{"SESSION_SECRET": "the old secret"})
		browser := n.login(t, "user=42&numeric=1&remember=1")
		g := startGo(t, n, session.Config{Secret: expressSecret, PreviousSecrets: []string{"the old secret"}}, "")
		if _, body := fetchOK(t, browser, g.URL+"/whoami"); body != "42" {
			t.Errorf("whoami = %q, want the numeric user 42", body)
		}
	})
	t.Run("sess not valid JSON", func(t *testing.T) {
		t.Parallel()
		n := startNode(t, map[string]string{"SESSION_SECRET": expressSecret})
		browser := n.login(t, "user=ada&remember=1")
		sid := n.sid(t, browser)
		pgtest.Exec(t, "ALTER TABLE "+n.legacy()+" ALTER COLUMN sess TYPE text")
		pgtest.Exec(t, "UPDATE "+n.legacy()+` SET sess = '{"cookie":{"expires":' WHERE sid = $1`, sid)
		g := startGo(t, n, session.Config{Secret: expressSecret}, "")
		for range 2 {
			resp, body := fetchOK(t, browser, g.URL+"/whoami")
			if body != "" || setCookie(resp, "session") != nil {
				t.Errorf("unreadable row: whoami %q, cookies %v; want no session", body, resp.Header["Set-Cookie"])
			}
		}
		u, _ := url.Parse(g.URL)
		for _, ck := range browser.Jar.Cookies(u) {
			if ck.Name == "connect.sid" {
				t.Error("connect.sid was not cleared")
			}
		}
		logs := g.logs.String()
		if got := strings.Count(logs, "an express-session row cannot be read"); got != 1 {
			t.Errorf("logged %d times, want once:\n%s", got, logs)
		}
		if strings.Contains(logs, sid) {
			t.Errorf("the log shows the sid:\n%s", logs)
		}
	})
}
