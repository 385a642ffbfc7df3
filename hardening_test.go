package session_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/pgtest"
)

// Tests for what an outside security review found (issue 11), one per
// finding, each failing on the code before the fix.

// TestRenewKeepsAbsoluteLifetime: renewing every two seconds must not
// keep a session with a three-second lifetime alive (ASVS 7.3.2). Only a
// sign-in starts a new lifetime.
func TestRenewKeepsAbsoluteLifetime(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/renew", handlerFunc(func(s *session.Session, r *http.Request) error { return s.Renew() }))
	ts := startServer(t, serverSetup{cfg: session.Config{Lifetime: 3 * time.Second}}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/login?user=ada")
	ts.clock.Advance(2 * time.Second)
	fetchOK(t, c, ts.URL+"/renew")
	if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "ada" {
		t.Fatalf("after a renewal within the lifetime: signed in as %q, want ada", who)
	}
	ts.clock.Advance(2 * time.Second) // 4s after sign-in
	if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "" {
		t.Errorf("4s after signing in with a 3s lifetime, renewed at 2s: still signed in as %q", who)
	}

	// A sign-in, here as another user on the same browser, starts afresh.
	fetchOK(t, c, ts.URL+"/login?user=ada")
	ts.clock.Advance(2 * time.Second)
	fetchOK(t, c, ts.URL+"/login?user=grace")
	ts.clock.Advance(2 * time.Second) // 4s after the first sign-in, 2s after the second
	if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "grace" {
		t.Errorf("2s after grace signed in: signed in as %q, want grace", who)
	}
}

// TestSetUserRenewsTheToken: a sign-in that forgets Renew must not let a
// cookie planted before it become the victim's signed-in session (session
// fixation, CWE-384).
func TestSetUserRenewsTheToken(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/signin-without-renew", handlerFunc(func(s *session.Session, r *http.Request) error {
		return s.SetUser(r.URL.Query().Get("user"))
	}))
	onEachStore(t, func(t *testing.T, start startFunc) {
		ts, _ := start(mux)
		attacker := ts.client(t)
		fetchOK(t, attacker, ts.URL+"/set?planted=1")
		planted := jarCookie(t, attacker, ts.URL, "session")

		// The victim's browser carries the planted cookie and signs in.
		resp, _ := sessionOnlyCookie(t, ts, "/signin-without-renew?user=ada", planted)
		ck := setCookie(resp, "session")
		if ck == nil || ck.Value == planted || ck.MaxAge <= 0 {
			t.Fatalf("sign-in set %q; want a new session cookie", resp.Header.Values("Set-Cookie"))
		}
		if _, who := sessionOnlyCookie(t, ts, "/whoami", planted); who != "" {
			t.Errorf("the planted cookie is signed in as %q after the victim's sign-in", who)
		}
		if _, who := sessionOnlyCookie(t, ts, "/whoami", ck.Value); who != "ada" {
			t.Errorf("the victim's new cookie is signed in as %q, want ada", who)
		}
		if _, got := sessionOnlyCookie(t, ts, "/get?key=planted", ck.Value); got != "1" {
			t.Errorf("the renewed session lost its data: planted = %q", got)
		}

		// Another user signing in on the same browser gets a token too.
		resp, _ = sessionOnlyCookie(t, ts, "/signin-without-renew?user=grace", ck.Value)
		if next := setCookie(resp, "session"); next == nil || next.Value == ck.Value {
			t.Errorf("switching users set %q; want a new token", resp.Header.Values("Set-Cookie"))
		}
		if _, who := sessionOnlyCookie(t, ts, "/whoami", ck.Value); who != "" {
			t.Errorf("ada's cookie is signed in as %q after grace signed in on that browser", who)
		}
	})
}

// TestRacingWritersGetANewSession: whatever shape a handler has, a write
// racing the end of its session (a logout, a revocation) is neither lost
// nor allowed to bring the session back: it lands in a new, anonymous
// session holding only that write, whose cookie the response sets. Before
// issue 11 a read-then-write answered 200 and dropped its write.
func TestRacingWritersGetANewSession(t *testing.T) {
	t.Parallel()
	shapes := map[string]func(s *session.Session, loaded func()) error{
		"blind write": func(s *session.Session, loaded func()) error {
			if err := s.Set("late", "written"); err != nil {
				return err
			}
			loaded()
			return nil
		},
		"read then write": func(s *session.Session, loaded func()) error {
			if _, err := s.Keys(); err != nil {
				return err
			}
			loaded()
			return s.Set("late", "written")
		},
		"update": func(s *session.Session, loaded func()) error {
			if _, err := s.Keys(); err != nil {
				return err
			}
			loaded()
			_, err := session.Update(s, "late", func(string, bool) (string, error) { return "written", nil })
			return err
		},
	}
	ends := map[string]func(t *testing.T, ts *testServer, c *http.Client){
		"destroy": func(t *testing.T, ts *testServer, c *http.Client) { fetchOK(t, c, ts.URL+"/destroy") },
		"revoke": func(t *testing.T, ts *testServer, c *http.Client) {
			if n, err := ts.manager.RevokeUser(t.Context(), "ada"); err != nil || n != 1 {
				t.Fatalf("RevokeUser = %d, %v; want 1", n, err)
			}
		},
	}
	for shapeName, shape := range shapes {
		for endName, end := range ends {
			t.Run(shapeName+" racing "+endName, func(t *testing.T) {
				t.Parallel()
				onEachStore(t, func(t *testing.T, start startFunc) {
					// Channels and handler of this store's run alone: the
					// stores run in parallel, and a release meant for one
					// must never let another's writer go early.
					loaded, release := make(chan struct{}), make(chan struct{})
					mux := http.NewServeMux()
					mux.Handle("/", appHandler())
					mux.Handle("/slow", handlerFunc(func(s *session.Session, r *http.Request) error {
						return shape(s, func() { loaded <- struct{}{}; <-release })
					}))
					ts, records := start(mux)
					c := ts.client(t)
					fetchOK(t, c, ts.URL+"/login?user=ada")
					fetchOK(t, c, ts.URL+"/set?secret=old")
					old := jarCookie(t, c, ts.URL, "session")
					done := make(chan *http.Response, 1)
					go func() {
						resp, _ := sessionOnlyCookie(t, ts, "/slow", old)
						done <- resp
					}()
					<-loaded
					end(t, ts, c)
					release <- struct{}{}
					resp := <-done
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("racing writer: status %d, want 200", resp.StatusCode)
					}
					ck := setCookie(resp, "session")
					if ck == nil || ck.MaxAge <= 0 || ck.Value == old {
						_, who := sessionOnlyCookie(t, ts, "/whoami", old)
						_, late := sessionOnlyCookie(t, ts, "/get?key=late", old)
						t.Fatalf("racing writer's response set %q (headers %v); want a new session's cookie. The old cookie now reads whoami %q, late %q; %d records",
							resp.Header.Values("Set-Cookie"), resp.Header, who, late, records())
					}
					if _, got := sessionOnlyCookie(t, ts, "/get?key=late", ck.Value); got != "written" {
						t.Errorf("the new session holds late = %q; want the racing write", got)
					}
					for path, want := range map[string]string{"/whoami": "", "/get?key=secret": ""} {
						if _, got := sessionOnlyCookie(t, ts, path, ck.Value); got != want {
							t.Errorf("new session %s = %q; want %q: nothing of the ended session carries over", path, got, want)
						}
						if _, got := sessionOnlyCookie(t, ts, path, old); got != "" {
							t.Errorf("old cookie %s = %q; the ended session came back", path, got)
						}
					}
					if n := records(); n != 1 {
						t.Errorf("store holds %d records; want only the racing writer's new session", n)
					}
				})
			})
		}
	}
}

// TestLogoutFailsClosed: a Destroy that did not reach the store answers
// the request with the error handler's 503, even when the handler ignores
// the error and writes "signed out" (ASVS 7.4.1). Before, the user was
// told they were signed out while the session lived on.
func TestLogoutFailsClosed(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.HandleFunc("/careless-logout", func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Destroy()
		io.WriteString(w, "signed out")
	})
	mux.HandleFunc("/degraded-logout", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		_ = s.Degrade()
		_ = s.Destroy()
		io.WriteString(w, "signed out")
	})
	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/login?user=ada")
	ts.store.failWith(func(method string) error {
		if method == "Destroy" {
			return session.ErrUnavailable
		}
		return nil
	})
	for _, path := range []string{"/careless-logout", "/degraded-logout"} {
		resp, body := fetch(t, c, ts.URL+path)
		if resp.StatusCode != http.StatusServiceUnavailable || body == "signed out" {
			t.Errorf("%s during an outage of the store: status %d, body %q; want the error handler's 503", path, resp.StatusCode, body)
		}
	}
	ts.store.failWith(nil)
	if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "ada" {
		t.Errorf("after the failed logouts: %q; the session should still be there, and the user told so", who)
	}
}

// TestMaxSizeEnforcedByStore: fifty requests that each add a value to one
// session at once cannot take it over SESSION_MAX_SIZE: the store checks
// the cap on the session as it is when it applies each change. Before, each
// request checked its own view, and the session grew to 46 times the cap.
func TestMaxSizeEnforcedByStore(t *testing.T) {
	t.Parallel()
	const limit, requests = 1000, 50
	value := strings.Repeat("v", 150)
	onEachStoreWith(t, session.Config{MaxSize: limit}, func(t *testing.T, start startFunc) {
		ts, _ := start(appHandler())
		c := ts.client(t)
		fetchOK(t, c, ts.URL+"/set?first=1")
		var wg sync.WaitGroup
		statuses := make(chan int, requests)
		for i := range requests {
			wg.Go(func() {
				resp, _ := fetch(t, c, fmt.Sprintf("%s/set?k%02d=%s", ts.URL, i, value))
				statuses <- resp.StatusCode
			})
		}
		wg.Wait()
		close(statuses)
		refused := 0
		for status := range statuses {
			switch status {
			case http.StatusOK:
			case http.StatusRequestEntityTooLarge:
				refused++
			default:
				t.Errorf("a concurrent write answered %d; want 200 or 413", status)
			}
		}
		size := storedSize(t, ts, c)
		if size > limit+limit/10 {
			t.Errorf("the session holds %d bytes of values after %d concurrent writes; the cap is %d", size, requests, limit)
		}
		if refused == 0 {
			t.Errorf("none of %d writes of %d bytes each was refused with a %d-byte cap", requests, len(value), limit)
		}
		if _, got := fetchOK(t, c, ts.URL+"/get?key=first"); got != "1" {
			t.Errorf("a value stored before the writes was lost: first = %q", got)
		}
	})
}

// storedSize is the size of the session's values as the client's session
// holds them, encoded as a JSON object.
func storedSize(t *testing.T, ts *testServer, c *http.Client) int {
	t.Helper()
	_, body := fetchOK(t, c, ts.URL+"/dump")
	return len(strings.TrimSpace(body))
}

// TestNULIsRefusedAtOnce: a NUL in a key or value is refused by Set with a
// clear error, on every store alike; before, Set said nothing and the save
// failed with a 500 on PostgreSQL while the memory store kept it.
func TestNULIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/nul", handlerFunc(func(s *session.Session, r *http.Request) error {
		for key, value := range map[string]any{"name": "a\x00b", "a\x00b": "name", "nested": map[string]string{"x": "\x00"}} {
			if err := s.Set(key, value); err == nil || !strings.Contains(err.Error(), "NUL") {
				return fmt.Errorf("Set(%q, %q) = %v; want an error naming the NUL", key, value, err)
			}
		}
		return s.Set("ok", "fine")
	}))
	onEachStore(t, func(t *testing.T, start startFunc) {
		ts, _ := start(mux)
		c := ts.client(t)
		fetchOK(t, c, ts.URL+"/nul")
		if _, got := fetchOK(t, c, ts.URL+"/get?key=ok"); got != "fine" {
			t.Errorf("the request's other value: ok = %q, want fine", got)
		}
		if _, got := fetchOK(t, c, ts.URL+"/get?key=name"); got != "" {
			t.Errorf("a refused value was stored: name = %q", got)
		}
	})
}

// TestPostgresCorruptRowIsNoSession: a row that does not decode (edited by
// hand, or by another version) is no session, logged once by its store
// key's prefix, its cookie cleared; a logout that reads first still ends
// it, and the user's other sessions are listed and revoked around it.
// Before, every request carrying its cookie was a 500.
func TestPostgresCorruptRowIsNoSession(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/careful-logout", handlerFunc(func(s *session.Session, r *http.Request) error {
		if _, err := s.UserID(); err != nil {
			return err
		}
		return s.Destroy()
	}))
	inst := startPostgresInstance(t, pgtest.Schema(t), session.Config{}, mux)
	m, err := session.New(t.Context(), session.Config{Secret: "shared-secret-of-every-instance-0123456789"},
		session.WithStore(inst.store), session.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv := httptest.NewServer(m.Handler(mux))
	t.Cleanup(srv.Close)

	c, other := inst.client(t), inst.client(t)
	fetchOK(t, c, srv.URL+"/login?user=ada")
	fetchOK(t, other, srv.URL+"/login?user=ada")
	value := jarCookie(t, c, srv.URL, "session")
	token, _ := session.TokenOfCookie(m, value)
	key := sha256Hex(token)
	pgtest.Exec(t, "ALTER TABLE "+inst.table+" DROP CONSTRAINT IF EXISTS session_data_check")
	pgtest.Exec(t, "UPDATE "+inst.table+` SET data = '"not an object"'::jsonb WHERE id = $1`, key)

	resp, who := fetchOK(t, c, srv.URL+"/whoami")
	if who != "" {
		t.Errorf("a corrupt session reads as user %q; want no session", who)
	}
	if ck := setCookie(resp, "session"); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("reading a corrupt session set %q; want the cookie cleared", resp.Header.Values("Set-Cookie"))
	}
	if !strings.Contains(logs.String(), key[:12]) || strings.Contains(logs.String(), token) || strings.Contains(logs.String(), value) {
		t.Errorf("log does not name the store key's prefix, or names the token or cookie:\n%s", logs.String())
	}
	if infos, err := m.UserSessions(t.Context(), "ada"); err != nil || len(infos) != 2 {
		t.Errorf("UserSessions around a corrupt row = %d, %v; want both of ada's sessions", len(infos), err)
	}
	if _, body := sessionOnlyCookie(t, inst.testServer, "/careful-logout", value); body != "ok" {
		t.Errorf("logout of a corrupt session answered %q", body)
	}
	var rows int
	if err := pgxQueryRow(t, "SELECT count(*) FROM "+inst.table+" WHERE id = $1", key).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("the corrupt row is still there after a logout (%d, %v)", rows, err)
	}
	// A write to a corrupt session starts a new one instead of failing.
	fetchOK(t, other, srv.URL+"/set?x=1")
	otherToken, _ := session.TokenOfCookie(m, jarCookie(t, other, srv.URL, "session"))
	pgtest.Exec(t, "UPDATE "+inst.table+` SET data = '"not an object"'::jsonb WHERE id = $1`, sha256Hex(otherToken))
	if resp, _ := fetch(t, other, srv.URL+"/set?y=2"); resp.StatusCode != http.StatusOK {
		t.Errorf("a write to a corrupt session answered %d; want 200 and a new session", resp.StatusCode)
	}
	if n, err := m.RevokeUser(t.Context(), "ada"); err != nil || n != 1 {
		t.Errorf("RevokeUser around a corrupt row = %d, %v; want the one left", n, err)
	}
}

// TestForeignCookiesAreReported: when most cookies in a minute are
// well-formed but signed with a secret this instance does not know (the
// secret was replaced without keeping the old one), it says so once, naming
// the likely cause, and clears each such cookie. Before, everyone was
// signed out with nothing logged, and the stale cookies were never cleared.
func TestForeignCookiesAreReported(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	old := startServer(t, serverSetup{}, appHandler())
	ts := startServer(t, serverSetup{options: []session.Option{session.WithLogger(logger)}}, appHandler())
	var cookies []string
	for range 12 {
		c := old.client(t)
		fetchOK(t, c, old.URL+"/set?x=1")
		cookies = append(cookies, jarCookie(t, c, old.URL, "session"))
	}
	for _, value := range cookies {
		resp, _ := sessionOnlyCookie(t, ts, "/read", value)
		if ck := setCookie(resp, "session"); ck == nil || ck.MaxAge >= 0 {
			t.Fatalf("a cookie signed with an unknown secret was not cleared: %q", resp.Header.Values("Set-Cookie"))
		}
	}
	const warning = "signed with a secret this instance does not know"
	if strings.Contains(logs.String(), warning) {
		t.Fatalf("warned before a minute had passed:\n%s", logs.String())
	}
	ts.clock.Advance(61 * time.Second)
	sessionOnlyCookie(t, ts, "/read", cookies[0])
	sessionOnlyCookie(t, ts, "/read", cookies[1])
	if n := strings.Count(logs.String(), warning); n != 1 || !strings.Contains(logs.String(), "SESSION_SECRET_PREVIOUS") {
		t.Errorf("%d warnings naming the cause; want exactly one:\n%s", n, logs.String())
	}
}

// TestPlainHTTPInProductionIsReported: production sends a Secure cookie,
// which a browser drops when the page came over plain HTTP; the user loops
// back to sign-in. The Manager says so, once per host, unless the request
// came over TLS or a trusted proxy says it did.
func TestPlainHTTPInProductionIsReported(t *testing.T) {
	t.Parallel()
	const warning = "arrived over plain HTTP"
	for _, tc := range []struct {
		name    string
		tls     bool
		proxies string
		header  string
		warn    bool
	}{
		{name: "plain HTTP", warn: true},
		{name: "TLS", tls: true},
		{name: "trusted proxy says https", proxies: "127.0.0.1", header: "https"},
		{name: "untrusted proxy says https", proxies: "10.0.0.1", header: "https", warn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			cfg := session.Config{Production: true, AllowMemoryStore: true}
			if tc.proxies != "" {
				parsed, err := session.ConfigFromLookup(lookupFrom(map[string]string{"SESSION_TRUSTED_PROXIES": tc.proxies}))
				if err != nil {
					t.Fatal(err)
				}
				cfg.TrustedProxies = parsed.TrustedProxies
			}
			ts := startServer(t, serverSetup{cfg: cfg, tls: tc.tls, options: []session.Option{session.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))}}, appHandler())
			for range 3 {
				c := ts.client(t)
				req, err := http.NewRequest("GET", ts.URL+"/visit", nil)
				if err != nil {
					t.Fatal(err)
				}
				if tc.header != "" {
					req.Header.Set("X-Forwarded-Proto", tc.header)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			want := 0
			if tc.warn {
				want = 1
			}
			if n := strings.Count(logs.String(), warning); n != want {
				t.Errorf("%d warnings; want %d:\n%s", n, want, logs.String())
			}
		})
	}
}
