package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// server is one running instance of the app.
type server struct {
	*httptest.Server
	app *app
}

// start runs the app on cfg, stopped when the test ends (or earlier, by
// stop, to restart it).
func start(t *testing.T, cfg session.Config) *server {
	t.Helper()
	return startLogging(t, cfg, io.Discard)
}

// startLogging is start with the app's log written to log.
func startLogging(t *testing.T, cfg session.Config, log io.Writer) *server {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(log, nil))
	a, err := newApp(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	s := &server{Server: httptest.NewServer(a.Handler()), app: a}
	t.Cleanup(s.stop)
	return s
}

func (s *server) stop() {
	s.Close() // waits for requests in flight, as Shutdown does
	s.app.Close()
}

// postgresConfig is a development configuration on a fresh schema of the
// test server, with no SESSION_SECRET: exactly
// "USE_POSTGRES=true DATABASE_URL=... go run ./examples/scheduler".
func postgresConfig(t *testing.T) session.Config {
	return session.Config{UsePostgres: true, DatabaseURL: pgtest.URL(t), Table: pgtest.Schema(t)}
}

// browser is one user agent: its own cookie jar, and the Origin header a
// browser sends with a form's POST.
type browser struct {
	t         *testing.T
	client    *http.Client
	userAgent string // Go's own when empty
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, client: &http.Client{Jar: jar}}
}

// get fetches a page, following redirects, and returns the final
// response's status, path and body.
func (b *browser) get(s *server, path string) (int, string, string) {
	b.t.Helper()
	return b.do(s, http.MethodGet, path, nil)
}

// post submits a form as a browser on the app's own page would.
func (b *browser) post(s *server, path string, form url.Values) (int, string, string) {
	b.t.Helper()
	return b.do(s, http.MethodPost, path, form)
}

func (b *browser) do(s *server, method, path string, form url.Values) (int, string, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	if b.userAgent != "" {
		req.Header.Set("User-Agent", b.userAgent)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", s.URL)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp.StatusCode, resp.Request.URL.Path, string(body)
}

func (b *browser) signIn(s *server, username, password string) string {
	b.t.Helper()
	status, path, body := b.post(s, "/signin", url.Values{"username": {username}, "password": {password}})
	if status != http.StatusOK || path != "/" {
		b.t.Fatalf("sign-in as %s ended at %s with %d:\n%s", username, path, status, body)
	}
	return body
}

func (b *browser) cookies(s *server) []*http.Cookie {
	u, _ := url.Parse(s.URL)
	return b.client.Jar.Cookies(u)
}

func mustContain(t *testing.T, body string, fragments ...string) {
	t.Helper()
	for _, f := range fragments {
		if !strings.Contains(body, f) {
			t.Errorf("page lacks %q:\n%s", f, body)
		}
	}
}

func TestSignInAddAppointmentSurviveRestart(t *testing.T) {
	t.Parallel()
	cfg := postgresConfig(t)
	s := start(t, cfg)
	ada := newBrowser(t)

	status, path, _ := ada.get(s, "/")
	if status != http.StatusOK || path != "/signin" {
		t.Fatalf("signed out, / ended at %s with %d; want the sign-in page", path, status)
	}
	body := ada.signIn(s, "ada", "lovelace")
	mustContain(t, body, "Welcome, Ada Lovelace.", "No appointments yet")

	_, _, body = ada.post(s, "/appointments", url.Values{"title": {"Dentist <3pm>"}, "date": {"2031-03-04"}, "time": {"15:00"}})
	mustContain(t, body, "Added “Dentist &lt;3pm&gt;” on Tue 4 Mar 2031 at 15:00.", "<span>Dentist &lt;3pm&gt;</span>")
	_, _, body = ada.get(s, "/")
	if strings.Contains(body, "Added") {
		t.Errorf("the flash message was shown twice:\n%s", body)
	}

	s.stop()
	s = start(t, cfg)
	status, path, body = ada.get(s, "/")
	if status != http.StatusOK || path != "/" {
		t.Fatalf("after a restart, / ended at %s with %d: signed out", path, status)
	}
	mustContain(t, body, "Ada Lovelace", "Dentist &lt;3pm&gt;")
}

func TestSignOutOfAllDevices(t *testing.T) {
	t.Parallel()
	s := start(t, postgresConfig(t))
	laptop, phone, other := newBrowser(t), newBrowser(t), newBrowser(t)
	laptop.signIn(s, "grace", "hopper")
	phone.signIn(s, "grace", "hopper")
	other.signIn(s, "ada", "lovelace")

	_, _, body := phone.get(s, "/sessions")
	if n := strings.Count(body, `<li class="device`); n != 2 {
		t.Errorf("sessions page shows %d sessions, want grace's 2:\n%s", n, body)
	}
	if n := strings.Count(body, "This device"); n != 1 {
		t.Errorf("sessions page marks %d sessions as this device, want 1:\n%s", n, body)
	}

	status, path, body := phone.post(s, "/signout-everywhere", nil)
	if status != http.StatusOK || path != "/signin" {
		t.Fatalf("sign out everywhere ended at %s with %d", path, status)
	}
	mustContain(t, body, "Signed out of 2 sessions on all your devices.")
	for name, b := range map[string]*browser{"laptop": laptop, "phone": phone} {
		if _, path, _ := b.get(s, "/"); path != "/signin" {
			t.Errorf("the %s is still signed in", name)
		}
	}
	if _, path, _ := other.get(s, "/"); path != "/" {
		t.Errorf("another user was signed out too")
	}
}

// User agents of two devices, as their browsers send them.
const (
	firefoxOnWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
	safariOnIPhone   = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

func TestSessionsPageNamesDevices(t *testing.T) {
	t.Parallel()
	s := start(t, session.Config{})
	laptop, phone := newBrowser(t), newBrowser(t)
	laptop.userAgent, phone.userAgent = firefoxOnWindows, safariOnIPhone
	laptop.signIn(s, "grace", "hopper")
	phone.signIn(s, "grace", "hopper")

	_, _, body := phone.get(s, "/sessions")
	mustContain(t, body,
		// This device first, then the laptop, each with its IP.
		`<strong class="name" title="`+safariOnIPhone+`">Safari 17 on iOS</strong> <span class="badge">This device</span>`,
		`<strong class="name" title="`+firefoxOnWindows+`">Firefox 128 on Windows</strong></span>`,
		`<span class="ip">127.0.0.1</span>`, "active just now",
		// Without JavaScript the sign-in time says it is in UTC.
		" UTC</time>", "data-local", `<script src="/static/localtime.js" defer></script>`,
		`action="/sessions/revoke-others"`, `action="/signout-everywhere"`)
	if strings.Index(body, "Safari 17 on iOS") > strings.Index(body, "Firefox 128 on Windows") {
		t.Errorf("this device is not listed first:\n%s", body)
	}

	status, path, body := phone.post(s, "/sessions/revoke-others", nil)
	if status != http.StatusOK || path != "/sessions" {
		t.Fatalf("sign out everywhere else ended at %s with %d", path, status)
	}
	mustContain(t, body, "Signed out of 1 other session.", "You are signed in on this device only.")
	if n := strings.Count(body, `<li class="device`); n != 1 {
		t.Errorf("after signing out everywhere else the page lists %d sessions, want 1:\n%s", n, body)
	}
	if _, path, _ := laptop.get(s, "/"); path != "/signin" {
		t.Errorf("the laptop is still signed in")
	}
	if _, path, _ := phone.get(s, "/"); path != "/" {
		t.Errorf("the phone was signed out too")
	}
}

func TestSignInIsLogged(t *testing.T) {
	t.Parallel()
	var log strings.Builder
	s := startLogging(t, session.Config{}, &log)
	for _, ua := range []string{firefoxOnWindows, "curl/8.5.0"} {
		b := newBrowser(t)
		b.userAgent = ua
		b.signIn(s, "ada", "lovelace")
	}
	s.stop() // tells the events already queued; the log is ours to read
	signIns := regexp.MustCompile(`(?m)msg="?new sign-in.*$`).FindAllString(log.String(), -1)
	want := []string{`msg="new sign-in from Firefox 128 on Windows"`, `msg="new sign-in from curl"`}
	if !slices.Equal(signIns, want) {
		t.Errorf("sign-ins logged as %q, want %q (nothing more: no user, no address)", signIns, want)
	}
}

// sessionKeys finds the sessions the sessions page offers to sign out.
var sessionKeys = regexp.MustCompile(`name="key" value="([0-9a-f]+)"`)

func TestRevokeOneSession(t *testing.T) {
	t.Parallel()
	s := start(t, session.Config{}) // the memory store has the same API
	laptop, phone := newBrowser(t), newBrowser(t)
	laptop.signIn(s, "ada", "lovelace")
	phone.signIn(s, "ada", "lovelace")

	_, _, body := phone.get(s, "/sessions")
	keys := sessionKeys.FindAllStringSubmatch(body, -1)
	if len(keys) != 1 {
		t.Fatalf("want one other session to sign out, found %d:\n%s", len(keys), body)
	}
	_, path, body := phone.post(s, "/sessions/revoke", url.Values{"key": {keys[0][1]}})
	if path != "/sessions" {
		t.Fatalf("revoking ended at %s", path)
	}
	mustContain(t, body, "Signed out that session.", "This device")
	if _, path, _ := laptop.get(s, "/"); path != "/signin" {
		t.Errorf("the revoked laptop is still signed in")
	}
	if _, path, _ := phone.get(s, "/"); path != "/" {
		t.Errorf("the phone was signed out too")
	}

	// A key of another user's session is refused.
	graceLaptop, gracePhone := newBrowser(t), newBrowser(t)
	graceLaptop.signIn(s, "grace", "hopper")
	gracePhone.signIn(s, "grace", "hopper")
	_, _, body = gracePhone.get(s, "/sessions")
	graceKeys := sessionKeys.FindAllStringSubmatch(body, -1)
	if len(graceKeys) != 1 {
		t.Fatalf("want grace's other session, found %d", len(graceKeys))
	}
	_, _, body = phone.post(s, "/sessions/revoke", url.Values{"key": {graceKeys[0][1]}})
	mustContain(t, body, "That session had already ended.")
	if _, path, _ := graceLaptop.get(s, "/"); path != "/" {
		t.Errorf("ada signed out one of grace's sessions")
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	s := start(t, session.Config{})
	for _, form := range []url.Values{
		{"username": {"ada"}, "password": {"hopper"}},
		{"username": {"nobody"}, "password": {"lovelace"}},
	} {
		b := newBrowser(t)
		status, path, body := b.post(s, "/signin", form)
		if status != http.StatusUnauthorized || path != "/signin" {
			t.Errorf("%v: %d at %s, want 401 on the sign-in page", form, status, path)
		}
		mustContain(t, body, "Wrong username or password.", `value="`+form.Get("username")+`"`)
		if c := b.cookies(s); len(c) != 0 {
			t.Errorf("%v: a failed sign-in set cookies %v", form, c)
		}
		if _, path, _ := b.get(s, "/"); path != "/signin" {
			t.Errorf("%v: signed in after all", form)
		}
	}
}

func TestSignOut(t *testing.T) {
	t.Parallel()
	s := start(t, session.Config{})
	b := newBrowser(t)
	b.signIn(s, "grace", "hopper")
	_, path, body := b.post(s, "/signout", nil)
	if path != "/signin" {
		t.Fatalf("sign-out ended at %s", path)
	}
	mustContain(t, body, "You have signed out.")
	if _, path, _ := b.get(s, "/"); path != "/signin" {
		t.Errorf("still signed in after signing out")
	}
}

func TestRefusesCrossOriginPosts(t *testing.T) {
	t.Parallel()
	s := start(t, session.Config{})
	b := newBrowser(t)
	b.signIn(s, "ada", "lovelace")
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/signout-everywhere", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-origin POST got %d, want 403", resp.StatusCode)
	}
	if _, path, _ := b.get(s, "/"); path != "/" {
		t.Errorf("the cross-origin POST signed the user out")
	}
}

func TestInvalidAppointment(t *testing.T) {
	t.Parallel()
	s := start(t, session.Config{})
	b := newBrowser(t)
	b.signIn(s, "ada", "lovelace")
	status, _, body := b.post(s, "/appointments", url.Values{"title": {"Lunch"}, "date": {"someday"}, "time": {"12:00"}})
	if status != http.StatusUnprocessableEntity {
		t.Errorf("status %d, want 422", status)
	}
	mustContain(t, body, "Give the appointment a date and a time.", `value="Lunch"`)
}

func TestPasswordHashes(t *testing.T) {
	t.Parallel()
	for id, password := range map[string]string{"ada": "lovelace", "grace": "hopper"} {
		if _, ok := authenticate(demoUsers, id, password); !ok {
			t.Errorf("%s/%s does not sign in", id, password)
		}
		if _, ok := authenticate(demoUsers, id, password+"x"); ok {
			t.Errorf("%s signs in with a wrong password", id)
		}
	}
	if checkPassword("$pbkdf2-sha256$0$AA$AA", "") || checkPassword("plain", "plain") {
		t.Error("a malformed hash matched")
	}
}

func TestRunServesUntilCanceled(t *testing.T) {
	t.Parallel()
	app := serve(t, nil)
	resp, err := http.Get(app.URL + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /signin: %d", resp.StatusCode)
	}
	if _, err := app.stop(); err != nil {
		t.Errorf("run returned %v after cancel, want nil", err)
	}
	if _, err := http.Get(app.URL + "/signin"); err == nil {
		t.Errorf("still serving after shutdown")
	}
}

// running is the app as main runs it.
type running struct {
	URL  string
	stop func() (log string, err error)
}

// serve runs the app through run, as main does, with env and ADDR (a free
// port of 127.0.0.1) as its whole environment, until the test ends or
// stop, which returns what the app logged and what run returned.
func serve(t *testing.T, env map[string]string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, printed := io.Pipe()
	var log strings.Builder // written by slog under its lock, read once run returned
	lookup := func(k string) (string, bool) {
		if k == "ADDR" {
			return "127.0.0.1:0", true
		}
		v, ok := env[k]
		return v, ok
	}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, lookup, printed, slog.New(slog.NewTextHandler(&log, nil)))
		printed.Close()
	}()
	stop := sync.OnceValues(func() (string, error) {
		cancel()
		err := <-done
		return log.String(), err
	})
	t.Cleanup(func() { stop() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		_, err := stop()
		t.Fatalf("run printed nothing; it returned %v", err)
	}
	go io.Copy(io.Discard, stdout) // the shutdown message
	address := regexp.MustCompile(`http://\S+`).FindString(lines.Text())
	if address == "" {
		t.Fatalf("no address in %q", lines.Text())
	}
	return &running{URL: address, stop: stop}
}
