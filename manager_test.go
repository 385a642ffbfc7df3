package session_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
)

func TestVisitCounterAndCookieAttributes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cfg        session.Config
		tls        bool
		cookieName string
		secure     bool
		origin     string // where the client finds the server; ts.URL when empty
	}{
		{name: "development", cookieName: "session"},
		{
			name:       "production",
			cfg:        session.Config{Production: true, AllowMemoryStore: true},
			tls:        true,
			cookieName: "__Host-session",
			secure:     true,
		},
		{
			name:       "production with a cookie domain",
			cfg:        session.Config{Production: true, AllowMemoryStore: true, CookieDomain: "example.com"},
			tls:        true,
			cookieName: "__Secure-session",
			secure:     true,
			// The test server's client sends example.com and its
			// subdomains to the server.
			origin: "https://app.example.com",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.cfg.Production {
				tt.cfg.Secret = randomSecret(t)
			}
			ts := startServer(t, serverSetup{cfg: tt.cfg, tls: tt.tls}, appHandler())
			c := ts.client(t)
			origin := ts.URL
			if tt.origin != "" {
				origin = tt.origin
			}
			resp, body := fetchOK(t, c, origin+"/visit")
			if body != "1" {
				t.Fatalf("first visit = %s, want 1", body)
			}
			ck := setCookie(resp, tt.cookieName)
			if ck == nil {
				t.Fatalf("no Set-Cookie named %q; got %q", tt.cookieName, resp.Header.Values("Set-Cookie"))
			}
			if !ck.HttpOnly || ck.Path != "/" || ck.SameSite != http.SameSiteLaxMode || ck.Secure != tt.secure {
				t.Errorf("cookie %q: HttpOnly=%v Path=%q SameSite=%v Secure=%v; want true, /, Lax, %v",
					resp.Header.Get("Set-Cookie"), ck.HttpOnly, ck.Path, ck.SameSite, ck.Secure, tt.secure)
			}
			wantExpiry := ts.clock.Now().Add(defaultLifetime)
			if !ck.Expires.Equal(wantExpiry) {
				t.Errorf("cookie Expires = %v, want the session deadline %v", ck.Expires, wantExpiry)
			}
			if want := int(defaultLifetime / time.Second); ck.MaxAge != want {
				t.Errorf("cookie Max-Age = %d, want %d", ck.MaxAge, want)
			}
			if tt.cfg.CookieDomain != "" && ck.Domain != tt.cfg.CookieDomain {
				t.Errorf("cookie Domain = %q, want %q", ck.Domain, tt.cfg.CookieDomain)
			}
			for want := 2; want <= 3; want++ {
				resp, body := fetchOK(t, c, origin+"/visit")
				if body != strconv.Itoa(want) {
					t.Fatalf("visit = %s, want %d", body, want)
				}
				if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
					t.Errorf("visit %d re-sent the unchanged cookie: %q", want, sc)
				}
			}
		})
	}
}

func TestLaziness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		path       string
		existing   bool // the client already holds a session
		wantCalls  map[string]int
		wantCookie bool
		wantVary   bool
	}{
		{name: "untouched, no cookie", path: "/noop", wantCalls: map[string]int{}},
		{name: "untouched, with a session", path: "/noop", existing: true, wantCalls: map[string]int{}},
		{name: "read without a session", path: "/read", wantCalls: map[string]int{}, wantVary: true},
		{name: "read", path: "/read", existing: true, wantCalls: map[string]int{"Load": 1}, wantVary: true},
		{name: "first write", path: "/visit", wantCalls: map[string]int{"Insert": 1}, wantCookie: true, wantVary: true},
		{name: "write", path: "/visit", existing: true, wantCalls: map[string]int{"Load": 1, "Apply": 1}, wantVary: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, serverSetup{}, appHandler())
			c := ts.client(t)
			if tt.existing {
				fetchOK(t, c, ts.URL+"/visit")
			}
			ts.store.counts()
			resp, _ := fetchOK(t, c, ts.URL+tt.path)
			got := ts.store.counts()
			if fmt.Sprint(got) != fmt.Sprint(tt.wantCalls) {
				t.Errorf("store calls = %v, want %v", got, tt.wantCalls)
			}
			if sc := resp.Header.Values("Set-Cookie"); (len(sc) > 0) != tt.wantCookie {
				t.Errorf("Set-Cookie = %q, want a cookie: %v", sc, tt.wantCookie)
			}
			if vary := resp.Header.Get("Vary"); (vary == "Cookie") != tt.wantVary {
				t.Errorf("Vary = %q, want Vary: Cookie: %v", vary, tt.wantVary)
			}
		})
	}
}

func TestSecretRotation(t *testing.T) {
	t.Parallel()
	s1, s2, s3 := randomSecret(t), randomSecret(t), randomSecret(t)
	clock := newFakeClock()
	store := newSpyStore(session.NewMemoryStoreOnClock(clock.Now))
	start := func(secret string, previous ...string) *testServer {
		cfg := session.Config{Secret: secret, PreviousSecrets: previous}
		return startServer(t, serverSetup{cfg: cfg, clock: clock, store: store}, appHandler())
	}
	a := start(s1)
	b := start(s2, s1)
	c := start(s2)
	d := start(s2)
	e := start(s2, s3) // s1 retired

	// withCookie GETs path on ts sending exactly the given cookie value.
	withCookie := func(ts *testServer, path, value string) (*http.Response, string) {
		t.Helper()
		resp, body := sessionOnlyCookie(t, ts, path, value)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, resp.StatusCode)
		}
		return resp, body
	}

	resp, _ := withCookie(a, "/set?color=blue", "")
	original := setCookie(resp, "session")
	if original == nil {
		t.Fatal("manager A set no cookie")
	}

	resp, body := withCookie(b, "/get?key=color", original.Value)
	if body != "blue" {
		t.Fatalf("manager B (previous secret S1) read %q, want the session's blue", body)
	}
	reissued := setCookie(resp, "session")
	if reissued == nil {
		t.Fatal("manager B accepted a cookie signed with a previous secret but did not re-issue it")
	}
	if reissued.Value == original.Value {
		t.Fatal("manager B re-issued the cookie unchanged")
	}
	if !reissued.Expires.Equal(original.Expires) {
		t.Errorf("re-issued cookie expires %v, want the session's deadline %v", reissued.Expires, original.Expires)
	}

	if _, body := withCookie(c, "/get?key=color", reissued.Value); body != "blue" {
		t.Errorf("manager C (S2 only) read %q from the re-issued cookie, want blue", body)
	}
	if _, body := withCookie(d, "/get?key=color", original.Value); body != "" {
		t.Errorf("manager D (S2 only) read %q from the S1 cookie, want a fresh session", body)
	}
	if _, body := withCookie(e, "/get?key=color", original.Value); body != "" {
		t.Errorf("manager E (S2, previous S3) read %q from a cookie signed by retired S1, want a fresh session", body)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []time.Duration // clock moves before each read
		alive bool            // after the last step
	}{
		{name: "read just before the idle expiry", steps: []time.Duration{29 * time.Minute}, alive: true},
		{name: "read at the idle expiry", steps: []time.Duration{30 * time.Minute}},
		{name: "idle too long", steps: []time.Duration{31 * time.Minute}},
		{name: "each read slides the window", steps: []time.Duration{20 * time.Minute, 20 * time.Minute, 20 * time.Minute, 29 * time.Minute}, alive: true},
		{name: "idle after being active", steps: []time.Duration{20 * time.Minute, 20 * time.Minute, 31 * time.Minute}},
		{name: "absolute lifetime ends an active session", steps: []time.Duration{25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := session.Config{IdleTimeout: 30 * time.Minute, Lifetime: 2 * time.Hour}
			ts := startServer(t, serverSetup{cfg: cfg}, appHandler())
			c := ts.client(t)
			fetchOK(t, c, ts.URL+"/visit")
			var body string
			for i, step := range tt.steps {
				ts.clock.Advance(step)
				_, body = fetchOK(t, c, ts.URL+"/read")
				if i < len(tt.steps)-1 && body != "1" {
					t.Fatalf("read %d: session gone too early", i+1)
				}
			}
			if alive := body == "1"; alive != tt.alive {
				t.Errorf("after %v: alive = %v, want %v", tt.steps, alive, tt.alive)
			}
		})
	}
}

func TestTouchThrottling(t *testing.T) {
	t.Parallel()
	cfg := session.Config{IdleTimeout: 30 * time.Minute, TouchInterval: 3 * time.Minute}
	ts := startServer(t, serverSetup{cfg: cfg}, appHandler())
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/visit")
	created := ts.clock.Now()

	for _, at := range []time.Duration{time.Minute, 2 * time.Minute, 3*time.Minute - time.Second} {
		ts.clock.Advance(at - ts.clock.Now().Sub(created))
		ts.store.counts()
		resp, _ := fetchOK(t, c, ts.URL+"/read")
		if got := ts.store.counts(); got["Touch"] != 0 || got["Apply"] != 0 {
			t.Errorf("read %v after the last write: store calls %v, want no Touch or Apply", at, got)
		}
		if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("read %v after the last write sent Set-Cookie %q", at, sc)
		}
	}

	ts.clock.Advance(2 * time.Second) // 3m01s since the write
	ts.store.counts()
	resp, _ := fetchOK(t, c, ts.URL+"/read")
	if got := ts.store.counts(); got["Touch"] != 1 || got["Apply"]+got["Modify"]+got["Insert"] != 0 {
		t.Errorf("read after the touch interval: store calls %v, want exactly one Touch", got)
	}
	ck := setCookie(resp, "session")
	if ck == nil {
		t.Fatal("read that moved the idle expiry did not re-send the cookie")
	}
	if want := ts.clock.Now().Add(30 * time.Minute); !ck.Expires.Equal(want) {
		t.Errorf("re-sent cookie expires %v, want the moved idle expiry %v", ck.Expires, want)
	}
	if want := 30 * 60; ck.MaxAge != want {
		t.Errorf("re-sent cookie Max-Age = %d, want %d", ck.MaxAge, want)
	}

	ts.store.counts()
	resp, _ = fetchOK(t, c, ts.URL+"/read")
	if got := ts.store.counts(); got["Touch"] != 0 || len(resp.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("read right after a touch: store calls %v, Set-Cookie %q; want neither", got, resp.Header.Values("Set-Cookie"))
	}
}

func TestStoreFailure(t *testing.T) {
	t.Parallel()
	errDown := fmt.Errorf("dial tcp: connection refused: %w", session.ErrUnavailable)
	errCorrupt := errors.New("row does not decode")
	tests := []struct {
		name       string
		method     string // the failing store method
		err        error
		path       string
		custom     bool // install a custom error handler
		wantStatus int
	}{
		{name: "load unavailable", method: "Load", err: errDown, path: "/read", wantStatus: http.StatusServiceUnavailable},
		{name: "replace unavailable", method: "Apply", err: errDown, path: "/visit", wantStatus: http.StatusServiceUnavailable},
		{name: "insert unavailable", method: "Insert", err: errDown, path: "/visit", wantStatus: http.StatusServiceUnavailable},
		{name: "load deadline", method: "Load", err: context.DeadlineExceeded, path: "/read", wantStatus: http.StatusServiceUnavailable},
		{name: "load other error", method: "Load", err: errCorrupt, path: "/read", wantStatus: http.StatusInternalServerError},
		{name: "replace other error", method: "Apply", err: errCorrupt, path: "/visit", wantStatus: http.StatusInternalServerError},
		{name: "custom handler", method: "Load", err: errDown, path: "/read", custom: true, wantStatus: http.StatusTeapot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu         sync.Mutex
				handlerErr error
			)
			var opts []session.Option
			if tt.custom {
				opts = append(opts, session.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
					mu.Lock()
					handlerErr = err
					mu.Unlock()
					http.Error(w, "custom", http.StatusTeapot)
				}))
			}
			ts := startServer(t, serverSetup{options: opts}, appHandler())
			c := ts.client(t)
			if tt.method != "Insert" {
				fetchOK(t, c, ts.URL+"/visit")
			}
			ts.store.failWith(func(method string) error {
				if method == tt.method {
					return tt.err
				}
				return nil
			})
			resp, body := fetch(t, c, ts.URL+tt.path)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", resp.StatusCode, tt.wantStatus, body)
			}
			retry := resp.Header.Get("Retry-After")
			if wantRetry := tt.wantStatus == http.StatusServiceUnavailable; (retry != "") != wantRetry {
				t.Errorf("Retry-After = %q, want one: %v", retry, wantRetry)
			}
			if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
				t.Errorf("failed request set cookies %q", sc)
			}
			if tt.custom {
				mu.Lock()
				if !errors.Is(handlerErr, session.ErrUnavailable) {
					t.Errorf("custom error handler got %v, want the store's error", handlerErr)
				}
				mu.Unlock()
			}

			ts.store.failWith(nil)
			_, body = fetchOK(t, c, ts.URL+"/visit")
			want := "2"
			if tt.method == "Insert" {
				want = "1"
			}
			if body != want {
				t.Errorf("after the store recovered, visit = %s, want %s", body, want)
			}
		})
	}
}

func TestRevokeUser(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverSetup{}, appHandler())
	ctx := context.Background()
	laptop, phone, other := ts.client(t), ts.client(t), ts.client(t)
	fetchOK(t, laptop, ts.URL+"/login?user=ada")
	ts.clock.Advance(time.Second) // distinct creation times: newest first
	fetchOK(t, phone, ts.URL+"/login?user=ada")
	fetchOK(t, other, ts.URL+"/login?user=grace")
	_, laptopKey := fetchOK(t, laptop, ts.URL+"/key")
	_, phoneKey := fetchOK(t, phone, ts.URL+"/key")

	infos, err := ts.manager.UserSessions(ctx, "ada")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Key != phoneKey || infos[1].Key != laptopKey {
		t.Fatalf("UserSessions(ada) = %+v, want phone then laptop (%s, %s)", infos, phoneKey, laptopKey)
	}
	for _, info := range infos {
		if info.UserID != "ada" || info.Created.IsZero() || info.Expiry.IsZero() {
			t.Errorf("incomplete Info %+v", info)
		}
	}

	n, err := ts.manager.RevokeUser(ctx, "ada")
	if err != nil || n != 2 {
		t.Fatalf("RevokeUser(ada) = %d, %v; want 2, nil", n, err)
	}
	for name, c := range map[string]*http.Client{"laptop": laptop, "phone": phone} {
		if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "" {
			t.Errorf("%s still signed in as %q after RevokeUser", name, who)
		}
	}
	if _, who := fetchOK(t, other, ts.URL+"/whoami"); who != "grace" {
		t.Errorf("another user's session = %q after RevokeUser(ada), want grace", who)
	}
	if infos, err := ts.manager.UserSessions(ctx, "ada"); err != nil || len(infos) != 0 {
		t.Errorf("UserSessions(ada) after revoking = %v, %v; want none", infos, err)
	}
}

func TestRevokeSession(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverSetup{}, appHandler())
	laptop, phone := ts.client(t), ts.client(t)
	fetchOK(t, laptop, ts.URL+"/login?user=ada")
	fetchOK(t, phone, ts.URL+"/login?user=ada")
	_, phoneKey := fetchOK(t, phone, ts.URL+"/key")
	if err := ts.manager.RevokeSession(context.Background(), phoneKey); err != nil {
		t.Fatal(err)
	}
	if _, who := fetchOK(t, phone, ts.URL+"/whoami"); who != "" {
		t.Errorf("revoked session still signed in as %q", who)
	}
	if _, who := fetchOK(t, laptop, ts.URL+"/whoami"); who != "ada" {
		t.Errorf("the other session = %q, want ada", who)
	}
}
