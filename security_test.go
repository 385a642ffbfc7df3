package session_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/pgtest"
)

// TestPostgresBadCookiesSendNoSQL replays every kind of bad cookie against
// the PostgreSQL store. Each gets a fresh session and a 200; a cookie whose
// signature does not verify costs no SQL at all, and one that verifies but
// names a dead session costs one SELECT. A write then starts a new session
// under a new token, never the one the cookie named.
func TestPostgresBadCookiesSendNoSQL(t *testing.T) {
	t.Parallel()
	table := pgtest.Schema(t)
	a := startPostgresInstance(t, table, session.Config{}, appHandler())
	stranger := startPostgresInstance(t, table, session.Config{Secret: randomSecret(t)}, appHandler())
	otherName := startPostgresInstance(t, table, session.Config{CookieName: "other"}, appHandler())
	issueOn := func(inst *pgInstance, name string) string { return issue(t, inst.testServer, name) }

	valid := issueOn(a, "session")
	token, ok := session.TokenOfCookie(a.manager, valid)
	if !ok {
		t.Fatal("the issued cookie does not verify")
	}
	tampered := func() string {
		b, err := base64.URLEncoding.DecodeString(valid)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 1
		return base64.URLEncoding.EncodeToString(b)
	}()
	destroyed := issueOn(a, "session")
	if resp, _ := rawCookieGet(t, a.testServer, "/destroy", "session="+destroyed); resp.StatusCode != http.StatusOK {
		t.Fatalf("destroy: status %d", resp.StatusCode)
	}
	expiredRow := issueOn(a, "session")
	expiredToken, _ := session.TokenOfCookie(a.manager, expiredRow)
	pgtest.Exec(t, "UPDATE "+table+" SET expires_at = now() - interval '1 second' WHERE id = $1", sha256Hex(expiredToken))
	const junk = "c2Vzc2lvbg"

	tests := []struct {
		name    string
		header  string
		selects int64  // 0: the cookie must not reach the store
		want    string // the color the session reads
	}{
		{name: "valid", header: "session=" + valid, selects: 1, want: "blue"},
		{name: "tampered MAC", header: "session=" + tampered},
		{name: "signed with another secret", header: "session=" + issueOn(stranger, "session")},
		{name: "signed for another cookie name", header: "session=" + issueOn(otherName, "other")},
		{name: "timestamp older than the lifetime", header: "session=" + session.SignToken(t, a.manager, token, time.Now().Add(-defaultLifetime-time.Minute))},
		{name: "empty", header: "session="},
		{name: "10 KB", header: "session=" + strings.Repeat("A", 10<<10)},
		{name: "not base64", header: "session=%%%***!!!"},
		{name: "duplicated junk", header: "session=" + junk + "; session=" + tampered},
		{name: "duplicated, junk first", header: "session=" + junk + "; session=" + valid, selects: 1, want: "blue"},
		{name: "valid value under another name", header: "sid=" + valid},
		{name: "signed, session destroyed", header: "session=" + destroyed, selects: 1},
		{name: "signed, session expired", header: "session=" + expiredRow, selects: 1},
		{name: "signed, token never issued", header: "session=" + session.SignToken(t, a.manager, randomToken(), time.Now()), selects: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: each case counts the instance's statements.
			*a.counter = statementCounter{}
			resp, body := rawCookieGet(t, a.testServer, "/get?key=color", tt.header)
			if resp.StatusCode != http.StatusOK || body != tt.want {
				t.Fatalf("read: status %d, color %q; want 200, %q", resp.StatusCode, body, tt.want)
			}
			if got := a.counter.total(); got != tt.selects || a.counter.selects.Load() != tt.selects {
				t.Errorf("read sent %d statements (%d SELECTs); want %d SELECTs and nothing else", got, a.counter.selects.Load(), tt.selects)
			}
			// A session cookie that names a dead session, or that does not
			// verify, is cleared so the browser stops sending it (issue 11:
			// before, only the first kind was); any other read sets nothing.
			clears := tt.want == "" && strings.HasPrefix(tt.header, "session=")
			if ck := setCookie(resp, "session"); len(resp.Header.Values("Set-Cookie")) > 1 ||
				(ck == nil) == clears || (ck != nil && (ck.Value != "" || ck.MaxAge >= 0)) {
				t.Errorf("read set %q; want a cleared cookie: %v", resp.Header.Values("Set-Cookie"), clears)
			}
			if tt.want != "" {
				return
			}
			resp, body = rawCookieGet(t, a.testServer, "/visit", tt.header)
			if resp.StatusCode != http.StatusOK || body != "1" {
				t.Fatalf("write: status %d, visits %q; want 200 and a fresh session", resp.StatusCode, body)
			}
			ck := setCookie(resp, "session")
			if ck == nil {
				t.Fatal("write started no session")
			}
			fresh, _ := session.TokenOfCookie(a.manager, ck.Value)
			for _, old := range []string{token, expiredToken} {
				if fresh == old {
					t.Errorf("the new session reuses the token the cookie named")
				}
			}
		})
	}
}

// TestPostgresStoresOnlyTheTokenHash reads the table as an attacker with a
// copy of it would: the row is keyed by the SHA-256 of the token, and no
// column holds the token or the cookie in any common encoding.
func TestPostgresStoresOnlyTheTokenHash(t *testing.T) {
	t.Parallel()
	a := startPostgresInstance(t, pgtest.Schema(t), session.Config{}, appHandler())
	c := a.client(t)
	var tokens []string
	for _, path := range []string{"/set?color=blue", "/login?user=ada"} {
		fetchOK(t, c, a.URL+path)
		value := jarCookie(t, c, a.URL, "session")
		token, ok := session.TokenOfCookie(a.manager, value)
		if !ok {
			t.Fatalf("%s: the cookie does not verify", path)
		}
		tokens = append(tokens, token)

		var id, row string
		if err := pgxQueryRow(t, "SELECT id, row_to_json(s)::text FROM "+a.table+" s").Scan(&id, &row); err != nil {
			t.Fatalf("%s: want exactly one row: %v", path, err)
		}
		if id != sha256Hex(token) {
			t.Errorf("%s: row id %s, want the hex SHA-256 of the token", path, id)
		}
		for _, tok := range tokens {
			raw, _ := base64.RawURLEncoding.DecodeString(tok)
			for _, form := range []string{tok, value, hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw), base64.RawStdEncoding.EncodeToString(raw)} {
				if strings.Contains(row, form) {
					t.Errorf("%s: the row holds a token or cookie (%q): %s", path, form, row)
				}
			}
		}
	}
	if tokens[0] == tokens[1] {
		t.Error("sign-in kept the token")
	}
}

// TestPostgresRenewKillsTheOldTokenEverywhere renews a session on one
// instance while a request holding the old token is in flight on another:
// the old token stops working on both at once, and the in-flight request's
// save does not bring it back.
func TestPostgresRenewKillsTheOldTokenEverywhere(t *testing.T) {
	t.Parallel()
	g := newGate("late")
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/slow", g.handler())
	a, b := twoInstances(t, mux)
	c := a.client(t)
	fetchOK(t, c, a.URL+"/set?color=blue")
	old := jarCookie(t, c, a.URL, "session")
	onB := withCookieOf(t, b, c, a)

	late := make(chan int, 1)
	go func() {
		resp, err := onB.Get(b.URL + "/slow?name=late")
		if err != nil {
			t.Error(err)
			late <- 0
			return
		}
		resp.Body.Close()
		late <- resp.StatusCode
	}()
	<-g.loaded
	fetchOK(t, c, a.URL+"/login?user=ada")
	renewed := jarCookie(t, c, a.URL, "session")
	for _, inst := range []*pgInstance{a, b} {
		if _, body := sessionOnlyCookie(t, inst.testServer, "/whoami", old); body != "" {
			t.Errorf("the pre-renewal cookie signs in as %q right after Renew", body)
		}
	}
	close(g.release["late"])
	if status := <-late; status != http.StatusOK {
		t.Errorf("in-flight request: status %d", status)
	}
	for _, inst := range []*pgInstance{a, b} {
		if _, body := sessionOnlyCookie(t, inst.testServer, "/get?key=color", old); body != "" {
			t.Errorf("the pre-renewal cookie reads %q after the in-flight save", body)
		}
		if _, body := sessionOnlyCookie(t, inst.testServer, "/whoami", renewed); body != "ada" {
			t.Errorf("the renewed cookie signs in as %q, want ada", body)
		}
	}
	// The in-flight write is not lost (issue 11): it went to a new,
	// anonymous session of its own, beside the renewed one, and holds
	// nothing of the old session.
	var rows, withUser int
	var others []byte
	err := pgxQueryRow(t, "SELECT count(*), count(*) FILTER (WHERE user_id IS NOT NULL), COALESCE(jsonb_agg(data) FILTER (WHERE user_id IS NULL), '[]') FROM "+a.table).
		Scan(&rows, &withUser, &others)
	if err != nil || rows != 2 || withUser != 1 || string(others) != `[{"late": "set by late"}]` {
		t.Errorf("%d rows, %d with a user, anonymous data %s (%v); want the renewed session and one anonymous session holding only the in-flight write", rows, withUser, others, err)
	}
}

// TestProductionCookieAttributesOnEveryPath checks every Set-Cookie a
// production server sends, whatever sent it (a new session, a renewal, a
// rotation re-issue, an idle-expiry touch, a logout), for the attributes
// production requires: the __Host- prefix and what it implies (Secure,
// Path=/, no Domain), HttpOnly and SameSite.
func TestProductionCookieAttributesOnEveryPath(t *testing.T) {
	t.Parallel()
	current, previous := randomSecret(t), randomSecret(t)
	cfg, err := session.ConfigFromLookup(lookupFrom(map[string]string{
		"NODE_ENV":                   "production",
		"SESSION_SECRET":             current,
		"SESSION_SECRET_PREVIOUS":    previous,
		"SESSION_ALLOW_MEMORY_STORE": "true",
		"SESSION_IDLE_TIMEOUT":       "30m",
	}))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, serverSetup{cfg: cfg, tls: true}, appHandler())
	oldCfg := cfg
	oldCfg.Secret, oldCfg.PreviousSecrets = previous, nil
	old := startServer(t, serverSetup{cfg: oldCfg, tls: true, store: ts.store, clock: ts.clock}, appHandler())

	var sent []string
	record := func(resp *http.Response) { sent = append(sent, resp.Header.Values("Set-Cookie")...) }
	c := ts.client(t)
	for _, path := range []string{"/visit", "/login?user=ada"} {
		resp, _ := fetchOK(t, c, ts.URL+path)
		record(resp)
	}
	ts.clock.Advance(10 * time.Minute)
	resp, _ := fetchOK(t, c, ts.URL+"/read") // slides the idle expiry
	record(resp)
	resp, _ = rawCookieGet(t, old, "/set?color=blue", "")
	rotated := setCookie(resp, "__Host-session")
	if rotated == nil {
		t.Fatal("the old-secret server set no cookie")
	}
	resp, _ = rawCookieGet(t, ts, "/read", "__Host-session="+rotated.Value) // re-issued with the current secret
	record(resp)
	resp, _ = fetchOK(t, c, ts.URL+"/destroy")
	record(resp)

	if len(sent) != 5 {
		t.Fatalf("got %d Set-Cookie headers, want one from each of the 5 paths: %q", len(sent), sent)
	}
	for _, line := range sent {
		ck, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("Set-Cookie %q: %v", line, err)
		}
		if ck.Name != "__Host-session" || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
			t.Errorf("Set-Cookie %q lacks a production attribute", line)
		}
	}
}

// TestHostileTableNamesAreRefused gives SESSION_TABLE names built to break
// out of an identifier. Configuration refuses them, naming the variable,
// and New refuses them before sending any SQL; the canary table survives.
// (Names given to PostgresStore directly are quoted instead:
// TestPostgresTableNames and FuzzPostgresTableName.)
func TestHostileTableNamesAreRefused(t *testing.T) {
	t.Parallel()
	schema := strings.TrimSuffix(pgtest.Schema(t), ".session")
	canary := `"` + schema + `"."canary"`
	pgtest.Exec(t, "CREATE TABLE "+canary+" (id int)")
	for _, name := range []string{
		`session"; DROP TABLE ` + canary + `; --`,
		"session; DROP TABLE canary",
		`a"b`,
		"x'y",
		schema + ".canary.x",
		"two words",
		"session--",
	} {
		_, err := session.ConfigFromLookup(lookupFrom(map[string]string{"SESSION_TABLE": name}))
		if vars := problemVariables(err); len(vars) != 1 || vars[0] != "SESSION_TABLE" {
			t.Errorf("SESSION_TABLE=%q: problems %q, want SESSION_TABLE refused", name, vars)
		}
		cfg := session.Config{UsePostgres: true, DatabaseURL: pgtest.URL(t), Table: name}
		if m, err := session.New(t.Context(), cfg, session.WithLogger(discardLogger)); err == nil {
			m.Close()
			t.Errorf("New accepted table %q", name)
		}
	}
	pgtest.Exec(t, "SELECT FROM "+canary)
}

// TestNoSecretsInLogsOrErrors runs a whole life at debug level, with every
// unhappy path the library logs (bad and rotated cookies, a development
// start without a secret, a database outage, a client leaving, a database
// that refuses a password), and then looks for every secret in the log and
// in every error: the current and previous secrets, every token and cookie
// value, and the database password.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	t.Parallel()
	const password = "S3cretPW-in-the-url"
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var (
		mu     sync.Mutex
		errs   []error
		secret = []string{password, url.QueryEscape(password)}
	)
	remember := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	keep := func(values ...string) {
		mu.Lock()
		defer mu.Unlock()
		secret = append(secret, values...)
	}

	proxy := pgtest.NewProxy(t)
	dbURL, err := url.Parse(proxy.URL())
	if err != nil {
		t.Fatal(err)
	}
	dbURL.User = url.UserPassword(dbURL.User.Username(), password) // the test server trusts, so any password works
	current, previous := randomSecret(t), randomSecret(t)
	keep(current, previous)
	cfg := session.Config{
		UsePostgres:     true,
		DatabaseURL:     dbURL.String(),
		Table:           pgtest.Schema(t),
		Secret:          current,
		PreviousSecrets: []string{previous},
		StoreTimeout:    time.Second,
	}
	logger.Info("starting", "config", cfg)
	m, err := session.New(t.Context(), cfg, session.WithLogger(logger), session.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
		remember(err)
		session.DefaultErrorHandler(w, r, err)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	reached, handlerGone := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.HandleFunc("/leave", func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Set("k", 1); err != nil {
			remember(err)
		}
		close(reached)
		<-r.Context().Done()
		close(handlerGone)
	})
	srv := httptest.NewServer(m.Handler(mux))
	t.Cleanup(srv.Close)
	ts := &testServer{Server: srv, manager: m}

	// Sign in, then collect every cookie and token.
	c := ts.client(t)
	seen := func(resp *http.Response) {
		for _, ck := range resp.Cookies() {
			keep(ck.Value)
			if token, ok := session.TokenOfCookie(m, ck.Value); ok {
				keep(token)
			}
		}
	}
	for _, path := range []string{"/set?color=blue", "/login?user=ada", "/visit"} {
		resp, _ := fetchOK(t, c, srv.URL+path)
		seen(resp)
	}
	valid := jarCookie(t, c, srv.URL, "session")

	// Bad and rotated cookies.
	dev, err := session.New(t.Context(), session.Config{}, session.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	dev.Close()
	keep(session.SecretOf(dev))
	oldSigner, err := session.New(t.Context(), session.Config{Secret: previous}, session.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	oldSigner.Close()
	forged := []string{
		session.SignToken(t, oldSigner, randomToken(), time.Now()),
		session.SignToken(t, m, randomToken(), time.Now().Add(-defaultLifetime-time.Hour)),
		session.SignToken(t, dev, randomToken(), time.Now()),
		valid[:len(valid)-2],
		strings.Repeat("Z", 5000),
	}
	for _, value := range forged {
		keep(value)
		resp, _ := rawCookieGet(t, ts, "/visit", "session="+value)
		seen(resp)
	}

	// A client that leaves mid-request.
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/leave", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: valid})
	left := make(chan struct{})
	go func() {
		if resp, err := srv.Client().Do(req); err == nil {
			resp.Body.Close()
		}
		close(left)
	}()
	<-reached
	cancel()
	<-left
	<-handlerGone

	// An outage.
	proxy.Cut()
	for _, path := range []string{"/read", "/visit", "/login?user=ada"} {
		if resp, _ := fetch(t, c, srv.URL+path); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s during the outage: %d, want 503", path, resp.StatusCode)
		}
	}
	if _, err := m.RevokeUser(t.Context(), "ada"); err != nil {
		remember(err)
		logger.Error("revoking failed", "error", err)
	}
	proxy.Restore()
	waitFor(t, "the database to come back", 15*time.Second, func() bool {
		resp, _ := fetch(t, c, srv.URL+"/visit")
		return resp.StatusCode == http.StatusOK
	})

	// A database that refuses to be reached, and one that refuses the password.
	refused := fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/appdb", password, closedPort(t))
	server := pgtest.Config(t, pgtest.URL(t)).ConnConfig
	noDB := fmt.Sprintf("postgres://%s:%s@%s:%d/no_such_database_here?sslmode=disable", server.User, password, server.Host, server.Port)
	for _, databaseURL := range []string{refused, noDB} {
		_, err := session.New(t.Context(), session.Config{UsePostgres: true, DatabaseURL: databaseURL, StoreTimeout: time.Second}, session.WithLogger(logger))
		if err == nil {
			t.Fatalf("New succeeded against %s", strings.TrimPrefix(databaseURL, "postgres://app:"+password))
		}
		remember(err)
		logger.Error("session store failed to start", "error", err)
	}

	ts.Close() // waits for handlers, so for their log lines
	out := logs.String()
	mu.Lock()
	defer mu.Unlock()
	if len(errs) == 0 {
		t.Fatal("the flow produced no errors to check")
	}
	for _, s := range secret {
		if len(s) < 8 {
			continue
		}
		if strings.Contains(out, s) {
			t.Errorf("the log reveals a secret, token or cookie (%.12s...)", s)
		}
		for _, err := range errs {
			for _, e := range chain(err) {
				if strings.Contains(e.Error(), s) || strings.Contains(fmt.Sprintf("%+v", e), s) {
					t.Errorf("error %q reveals a secret, token or cookie (%.12s...)", e, s)
				}
			}
		}
	}
	for _, want := range []string{"level=DEBUG", "level=WARN", "level=ERROR"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log has no %s line; the flow did not reach every path", want)
		}
	}
	t.Logf("checked %d secrets against %d log bytes and %d errors", len(secret), len(out), len(errs))
}

// TestUnverifiedCookieLoggedAtDebugOnly: a cookie of the session's name that
// does not verify is noted at debug level, and only there; a request
// without one, or a logger above debug, gets no such line.
func TestUnverifiedCookieLoggedAtDebugOnly(t *testing.T) {
	t.Parallel()
	const line = "ignoring a cookie that does not verify"
	for _, tc := range []struct {
		name   string
		level  slog.Level
		cookie string
		want   bool
	}{
		{"debug, bad cookie", slog.LevelDebug, "session=not-a-signed-value", true},
		{"debug, no cookie", slog.LevelDebug, "", false},
		{"info, bad cookie", slog.LevelInfo, "session=not-a-signed-value", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: tc.level}))
			m, err := session.New(t.Context(), session.Config{Secret: randomSecret(t)}, session.WithLogger(logger))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			if rec := serve(m.Handler(appHandler()), "/visit", tc.cookie); rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			if got := strings.Contains(logs.String(), line); got != tc.want {
				t.Errorf("log has %q: %v, want %v; log:\n%s", line, got, tc.want, logs.String())
			}
		})
	}
}
