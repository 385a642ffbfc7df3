package session_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
)

// Tests for "your devices" (issue 15): what a session records of its
// device, signing out the others, a cap on sessions per user, lifetimes of
// a session's own, and events.

// devicesApp is appHandler with the routes a "your devices" page needs.
func devicesApp(m func() *session.Manager) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.HandleFunc("/devices", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		user, err := s.UserID()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		infos, err := m().UserSessions(r.Context(), user)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		for _, info := range infos {
			fmt.Fprintf(w, "%s|%s|%v|%d|%d\n", info.UserAgent, info.IP, info.Current, info.LastSeen.Unix(), info.Created.UnixMicro())
		}
	})
	mux.Handle("/renew", handlerFunc(func(s *session.Session, r *http.Request) error {
		return s.Renew()
	}))
	mux.Handle("/others", handlerFunc(func(s *session.Session, r *http.Request) error {
		_, err := s.RevokeOthers()
		return err
	}))
	return mux
}

// startDevicesServer runs devicesApp on cfg.
func startDevicesServer(t *testing.T, setup serverSetup) *testServer {
	var ts *testServer
	ts = startServer(t, setup, devicesApp(func() *session.Manager { return ts.manager }))
	return ts
}

// get sends a GET with a User-Agent and extra headers, as a browser would.
func getAs(t *testing.T, c *http.Client, url, userAgent string, header ...string) string {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", userAgent)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return string(body)
}

// TestDeviceDetails: each session records the browser and address that
// signed in, shows which is the current one, and moves LastSeen as it is
// used, with no write per request. The address is the peer's unless a
// trusted proxy reports the client's.
func TestDeviceDetails(t *testing.T) {
	t.Parallel()
	ts := startDevicesServer(t, serverSetup{})
	laptop, phone := ts.client(t), ts.client(t)
	getAs(t, laptop, ts.URL+"/login?user=ada", "Laptop/1.0")
	getAs(t, phone, ts.URL+"/login?user=ada", "Phone/2.0", "X-Forwarded-For", "203.0.113.9")
	rows := strings.Split(strings.TrimSpace(getAs(t, laptop, ts.URL+"/devices", "Laptop/1.0")), "\n")
	slices.Sort(rows)
	if len(rows) != 2 || !strings.HasPrefix(rows[0], "Laptop/1.0|127.0.0.1|true|") || !strings.HasPrefix(rows[1], "Phone/2.0|127.0.0.1|false|") {
		t.Errorf("devices seen from the laptop = %q; want both, each with its browser and the peer's address (no proxy is trusted), the laptop current", rows)
	}

	// Reads slide nothing without an idle timeout, but LastSeen moves
	// once lastSeenInterval has passed, with one small write.
	before := strings.Split(rows[1], "|")[3]
	ts.clock.Advance(6 * time.Minute)
	ts.store.counts()
	getAs(t, phone, ts.URL+"/read", "Phone/2.0")
	getAs(t, phone, ts.URL+"/read", "Phone/2.0")
	if got := ts.store.counts(); got["Touch"] != 1 || got["Apply"] != 0 {
		t.Errorf("two reads 6 minutes after the last write made %v; want one touch for LastSeen", got)
	}
	for _, row := range strings.Split(getAs(t, phone, ts.URL+"/devices", "Phone/2.0"), "\n") {
		if strings.HasPrefix(row, "Phone/2.0") && strings.Split(row, "|")[3] == before {
			t.Errorf("LastSeen did not move after the phone was used: %s", row)
		}
	}

	proxied := startDevicesServer(t, serverSetup{cfg: session.Config{TrustedProxies: trusted(t, "127.0.0.1")}})
	c := proxied.client(t)
	getAs(t, c, proxied.URL+"/login?user=ada", "Proxied/1.0", "X-Forwarded-For", "198.51.100.4, 10.1.2.3")
	if got := getAs(t, c, proxied.URL+"/devices", "Proxied/1.0"); !strings.Contains(got, "|10.1.2.3|") {
		t.Errorf("behind a trusted proxy the device is %q; want the nearest untrusted hop 10.1.2.3", got)
	}
}

// TestRenewalKeepsTheSignIn: a renewal that is no sign-in (a privilege
// change) moves the session to a new token but keeps when and from which
// device the user signed in, which is what a devices page shows; only a
// sign-in takes the time and device anew.
func TestRenewalKeepsTheSignIn(t *testing.T) {
	t.Parallel()
	onEachStore(t, func(t *testing.T, start startFunc) {
		var ts *testServer
		ts, _ = start(devicesApp(func() *session.Manager { return ts.manager }))
		c := ts.client(t)
		getAs(t, c, ts.URL+"/login?user=ada", "Laptop/1.0")
		signedIn := getAs(t, c, ts.URL+"/devices", "Laptop/1.0")
		ts.clock.Advance(time.Hour)
		getAs(t, c, ts.URL+"/renew", "Laptop/1.1", "X-Forwarded-For", "203.0.113.9")
		renewed := getAs(t, c, ts.URL+"/devices", "Laptop/1.1")
		field := func(rows string, i int) string { return strings.Split(strings.TrimSpace(rows), "|")[i] }
		if field(renewed, 0) != "Laptop/1.0" || field(renewed, 4) != field(signedIn, 4) {
			t.Errorf("after a renewal an hour later the device row is %q; want the sign-in's browser and time, as before: %q", renewed, signedIn)
		}
		ts.clock.Advance(time.Hour)
		getAs(t, c, ts.URL+"/login?user=bob", "Laptop/2.0")
		again := getAs(t, c, ts.URL+"/devices", "Laptop/2.0")
		if field(again, 0) != "Laptop/2.0" || field(again, 4) == field(signedIn, 4) {
			t.Errorf("after another sign-in the device row is %q; want the new browser and time", again)
		}
	})
}

// trusted parses a SESSION_TRUSTED_PROXIES value.
func trusted(t *testing.T, proxies string) []netip.Prefix {
	t.Helper()
	cfg, err := session.ConfigFromLookup(lookupFrom(map[string]string{"SESSION_TRUSTED_PROXIES": proxies}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.TrustedProxies
}

// TestRevokeOthers: "sign out other devices" ends every other session of
// the user at once and keeps this one.
func TestRevokeOthers(t *testing.T) {
	t.Parallel()
	onEachStore(t, func(t *testing.T, start startFunc) {
		var ts *testServer
		ts, records := start(devicesApp(func() *session.Manager { return ts.manager }))
		here, there, elsewhere, other := ts.client(t), ts.client(t), ts.client(t), ts.client(t)
		for _, c := range []*http.Client{here, there, elsewhere} {
			fetchOK(t, c, ts.URL+"/login?user=ada")
		}
		fetchOK(t, other, ts.URL+"/login?user=grace")
		fetchOK(t, here, ts.URL+"/others")
		for c, want := range map[*http.Client]string{here: "ada", there: "", elsewhere: "", other: "grace"} {
			if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != want {
				t.Errorf("after RevokeOthers a browser is signed in as %q; want %q", who, want)
			}
		}
		if n := records(); n != 2 {
			t.Errorf("%d sessions left; want ada's current one and grace's", n)
		}
	})
}

// TestMaxPerUser: with SESSION_MAX_PER_USER a sign-in ends the user's least
// recently seen sessions over the cap, concurrent sign-ins never leave more
// than the cap, and the evicted browser is signed out cleanly.
func TestMaxPerUser(t *testing.T) {
	t.Parallel()
	onEachStoreWith(t, session.Config{MaxPerUser: 2}, func(t *testing.T, start startFunc) {
		var ts *testServer
		ts, _ = start(devicesApp(func() *session.Manager { return ts.manager }))
		oldest, newer := ts.client(t), ts.client(t)
		fetchOK(t, oldest, ts.URL+"/login?user=ada")
		ts.clock.Advance(time.Minute) // the memory store's clock; PostgreSQL's moves by itself
		fetchOK(t, newer, ts.URL+"/login?user=ada")
		ts.clock.Advance(time.Minute)
		fetchOK(t, newer, ts.URL+"/set?x=1") // seen after oldest
		ts.clock.Advance(time.Minute)
		third := ts.client(t)
		fetchOK(t, third, ts.URL+"/login?user=ada")
		resp, who := fetchOK(t, oldest, ts.URL+"/whoami")
		if who != "" {
			t.Errorf("the least recently seen session is still signed in as %q", who)
		}
		if ck := setCookie(resp, "session"); ck == nil || ck.MaxAge >= 0 {
			t.Errorf("the evicted browser's next response set %q; want its cookie cleared", resp.Header.Values("Set-Cookie"))
		}
		for _, c := range []*http.Client{newer, third} {
			if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "ada" {
				t.Errorf("a recent session is signed in as %q; want ada", who)
			}
		}

		var wg sync.WaitGroup
		for range 12 {
			wg.Go(func() {
				c := ts.client(t)
				fetch(t, c, ts.URL+"/login?user=grace")
			})
		}
		wg.Wait()
		if infos, err := ts.manager.UserSessions(t.Context(), "grace"); err != nil || len(infos) > 2 {
			t.Errorf("after 12 concurrent sign-ins with a cap of 2: %d sessions (%v)", len(infos), err)
		}
	})
}

// TestSetLifetime: a session can carry lifetimes of its own, shorter or,
// when the configuration allows it on purpose, longer; the store keeps
// them, Deadline and the cookie show them, and they end the session.
func TestSetLifetime(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/admin", handlerFunc(func(s *session.Session, r *http.Request) error {
		return errors.Join(s.SetUser("root"), s.SetLifetime(time.Hour, 10*time.Minute))
	}))
	mux.Handle("/remember", handlerFunc(func(s *session.Session, r *http.Request) error {
		return errors.Join(s.SetUser("ada"), s.SetLifetime(90*24*time.Hour, 0))
	}))
	mux.HandleFunc("/deadline", func(w http.ResponseWriter, r *http.Request) {
		d, err := session.FromContext(r.Context()).Deadline()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, d.UTC().Format(time.RFC3339))
	})

	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	resp, _ := fetchOK(t, c, ts.URL+"/admin")
	now := ts.clock.Now()
	if ck := setCookie(resp, "session"); ck == nil || !ck.Expires.Equal(now.Add(10*time.Minute)) {
		t.Errorf("the admin's cookie = %v; want it to expire with the 10-minute idle timeout", ck)
	}
	if _, d := fetchOK(t, c, ts.URL+"/deadline"); d != now.Add(10*time.Minute).UTC().Format(time.RFC3339) {
		t.Errorf("Deadline = %s; want the session's own idle expiry", d)
	}
	ts.clock.Advance(9 * time.Minute)
	fetchOK(t, c, ts.URL+"/set?x=1") // slides the idle expiry by its own 10 minutes
	ts.clock.Advance(9 * time.Minute)
	if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "root" {
		t.Errorf("after activity within its idle timeout the admin is %q", who)
	}
	ts.clock.Advance(11 * time.Minute)
	if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "" {
		t.Errorf("11 idle minutes past a 10-minute idle timeout the admin is still %q", who)
	}

	if resp, _ := fetch(t, ts.client(t), ts.URL+"/remember"); resp.StatusCode == http.StatusOK {
		t.Error("a 90-day lifetime was accepted beyond SESSION_MAX_LIFETIME")
	}
	long := startServer(t, serverSetup{cfg: session.Config{MaxLifetime: 90 * 24 * time.Hour}}, mux)
	c = long.client(t)
	resp, _ = fetchOK(t, c, long.URL+"/remember")
	if ck := setCookie(resp, "session"); ck == nil || !ck.Expires.Equal(long.clock.Now().Add(90*24*time.Hour)) {
		t.Errorf("remember-me cookie = %v; want 90 days", ck)
	}
	long.clock.Advance(30 * 24 * time.Hour) // past the default 14-day lifetime
	if _, who := fetchOK(t, c, long.URL+"/whoami"); who != "ada" {
		t.Errorf("30 days into a 90-day session: %q", who)
	}
}

// TestEvents: the hook hears of every kind of event, with the session's
// details, after the store committed it, and a hook that blocks never
// delays a response.
func TestEvents(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []session.Event
	block := make(chan struct{})
	hook := func(e session.Event) {
		<-block
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e)
	}
	var ts *testServer
	ts = startServer(t, serverSetup{cfg: session.Config{MaxPerUser: 1}, options: []session.Option{session.WithEvents(hook)}},
		devicesApp(func() *session.Manager { return ts.manager }))
	first, second, third := ts.client(t), ts.client(t), ts.client(t)
	getAs(t, first, ts.URL+"/set?x=1", "First/1")        // created
	getAs(t, first, ts.URL+"/login?user=ada", "First/1") // renewed, signed-in
	ts.clock.Advance(time.Minute)
	getAs(t, second, ts.URL+"/login?user=ada", "Second/1")                 // created, signed-in, evicted (first)
	getAs(t, second, ts.URL+"/destroy", "Second/1")                        // destroyed
	getAs(t, third, ts.URL+"/login?user=grace", "Third/1")                 // created, signed-in
	if _, err := ts.manager.RevokeUser(t.Context(), "grace"); err != nil { // revoked
		t.Fatal(err)
	}
	// Every response came back while the hook was blocked.
	close(block)
	ts.manager.Close() // tells what is queued
	mu.Lock()
	defer mu.Unlock()
	var kinds []string
	for _, e := range seen {
		kinds = append(kinds, e.Kind+":"+e.Session.UserID)
		if e.Session.Key == "" || e.Time.IsZero() {
			t.Errorf("event %+v lacks the session's key or the time", e)
		}
	}
	want := []string{"created:", "renewed:ada", "signed-in:ada", "created:ada", "signed-in:ada", "evicted:ada", "destroyed:ada",
		"created:grace", "signed-in:grace", "revoked:grace"}
	if !slices.Equal(kinds, want) {
		t.Errorf("events = %q;\nwant     %q", kinds, want)
	}
	for _, e := range seen {
		if e.Kind == "created" && e.Session.UserID == "grace" && e.Session.UserAgent != "Third/1" {
			t.Errorf("created event's device = %q; want the browser that created it", e.Session.UserAgent)
		}
	}
}

// TestExpiredEvents: pruning tells of the sessions it removes.
func TestExpiredEvents(t *testing.T) {
	t.Parallel()
	got := make(chan session.Event, 10)
	ts := startServer(t, serverSetup{cfg: session.Config{Lifetime: time.Hour, PruneInterval: 10 * time.Millisecond},
		options: []session.Option{session.WithEvents(func(e session.Event) { got <- e })}}, appHandler())
	fetchOK(t, ts.client(t), ts.URL+"/login?user=ada")
	for e := <-got; e.Kind != "signed-in"; e = <-got {
	}
	ts.clock.Advance(2 * time.Hour)
	if e := <-got; e.Kind != "expired" || e.Session.UserID != "ada" {
		t.Errorf("after the session expired: %+v; want an expired event for ada's session", e)
	}
}
