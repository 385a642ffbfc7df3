package session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/pgtest"
)

func TestPostgresTwoInstancesShareSessions(t *testing.T) {
	t.Parallel()
	a, b := twoInstances(t, appHandler())

	onA := a.client(t)
	fetchOK(t, onA, a.URL+"/login?user=ada")
	fetchOK(t, onA, a.URL+"/set?color=teal")
	onB := withCookieOf(t, b, onA, a)
	if _, body := fetchOK(t, onB, b.URL+"/get?key=color"); body != "teal" {
		t.Fatalf("instance B reads color=%q; want the teal set on A", body)
	}
	if _, body := fetchOK(t, onB, b.URL+"/whoami"); body != "ada" {
		t.Fatalf("instance B sees user %q; want ada", body)
	}

	fetchOK(t, onB, b.URL+"/destroy")
	if _, body := fetchOK(t, onA, a.URL+"/whoami"); body != "" {
		t.Fatalf("after logout on B, A still sees user %q", body)
	}
}

func TestPostgresRevokeUserOnEveryInstance(t *testing.T) {
	t.Parallel()
	a, b := twoInstances(t, appHandler())
	laptop, phone, other := a.client(t), b.client(t), a.client(t)
	fetchOK(t, laptop, a.URL+"/login?user=ada")
	fetchOK(t, phone, b.URL+"/login?user=ada")
	fetchOK(t, other, a.URL+"/login?user=grace")

	infos, err := b.manager.UserSessions(t.Context(), "ada")
	if err != nil || len(infos) != 2 {
		t.Fatalf("UserSessions(ada) = %d sessions, %v; want 2", len(infos), err)
	}
	n, err := b.manager.RevokeUser(t.Context(), "ada")
	if err != nil || n != 2 {
		t.Fatalf("RevokeUser(ada) = %d, %v; want 2", n, err)
	}
	if _, body := fetchOK(t, laptop, a.URL+"/whoami"); body != "" {
		t.Errorf("laptop on A still signed in as %q", body)
	}
	if _, body := fetchOK(t, phone, b.URL+"/whoami"); body != "" {
		t.Errorf("phone on B still signed in as %q", body)
	}
	if _, body := fetchOK(t, other, a.URL+"/whoami"); body != "grace" {
		t.Errorf("grace's session was revoked too: whoami=%q", body)
	}
}

// TestPostgresConcurrentKeysLoseNothing makes eight requests load the same
// version of one session before any saves, each then setting its own key:
// each save must apply its own key to the record as the others left it.
func TestPostgresConcurrentKeysLoseNothing(t *testing.T) {
	t.Parallel()
	const n = 8
	var names []string
	for i := range n {
		names = append(names, "k"+strconv.Itoa(i))
	}
	g := newGate(names...)
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/slow", g.handler())
	a, b := twoInstances(t, mux)
	c := a.client(t)
	fetchOK(t, c, a.URL+"/set?base=1")
	onB := withCookieOf(t, b, c, a)

	var wg sync.WaitGroup
	for i, name := range names {
		client, inst := c, a
		if i%2 == 1 {
			client, inst = onB, b // half the requests on the other instance
		}
		wg.Go(func() {
			resp, err := client.Get(inst.URL + "/slow?name=" + name)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("request %s: status %d", name, resp.StatusCode)
			}
		})
	}
	for range names {
		<-g.loaded // every request has read the same version
	}
	for _, name := range names {
		close(g.release[name])
	}
	wg.Wait()

	for _, name := range append(names, "base") {
		if _, body := fetchOK(t, c, a.URL+"/get?key="+name); body == "" {
			t.Errorf("key %s was lost", name)
		}
	}
}

func TestPostgresAtomicIncrementsAreExact(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.Handle("/incr", handlerFunc(func(s *session.Session, r *http.Request) error {
		_, err := session.Update(s, "counter", func(n int, _ bool) (int, error) { return n + 1, nil })
		return err
	}))
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		n, _ := session.Value[int](session.FromContext(r.Context()), "counter")
		fmt.Fprint(w, n)
	})
	a, b := twoInstances(t, mux)
	c := a.client(t)
	fetchOK(t, c, a.URL+"/set?x=1")
	onB := withCookieOf(t, b, c, a)

	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		client, inst := c, a
		if i%2 == 1 {
			client, inst = onB, b
		}
		wg.Go(func() {
			resp, err := client.Get(inst.URL + "/incr")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("increment: status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if _, body := fetchOK(t, c, a.URL+"/count"); body != strconv.Itoa(n) {
		t.Fatalf("counter = %s after %d concurrent increments", body, n)
	}
}

// TestPostgresStatementsPerRequest pins the cost of each kind of request
// to the floor: nothing for an untouched session, one SELECT for a read,
// a SELECT and an UPDATE for a read and a write, one UPDATE for a blind
// write, one DELETE for a logout, one INSERT for a new session.
func TestPostgresStatementsPerRequest(t *testing.T) {
	t.Parallel()
	// The size cap off: with a cap, Set still reads the session to check
	// it, which the default 64 KiB cap (Config.MaxSize) will not need once
	// the store alone enforces it; this test pins the floor without it.
	a := startPostgresInstance(t, pgtest.Schema(t), session.Config{MaxSize: -1}, appHandler())
	c := a.client(t)
	fetchOK(t, c, a.URL+"/visit")
	steps := []struct {
		path                                      string
		selects, inserts, updates, deletes, total int64
	}{
		{path: "/noop"},
		{path: "/read", selects: 1, total: 1},
		{path: "/visit", selects: 1, updates: 1, total: 2},
		{path: "/read", selects: 1, total: 1},
		{path: "/set?color=red", updates: 1, total: 1}, // a write that reads nothing
		{path: "/get?key=color", selects: 1, total: 1},
		{path: "/destroy", deletes: 1, total: 1}, // a logout reads nothing first
	}
	for _, step := range steps {
		*a.counter = statementCounter{}
		fetchOK(t, c, a.URL+step.path)
		got := []int64{a.counter.selects.Load(), a.counter.inserts.Load(), a.counter.updates.Load(), a.counter.deletes.Load(), a.counter.total()}
		want := []int64{step.selects, step.inserts, step.updates, step.deletes, step.total}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s sent [select insert update delete total] = %v; want %v", step.path, got, want)
		}
	}
	*a.counter = statementCounter{}
	fetchOK(t, a.client(t), a.URL+"/visit")
	if got := a.counter.inserts.Load(); got != 1 || a.counter.total() != 1 {
		t.Errorf("a new session sent %d INSERTs of %d statements; want exactly one INSERT", got, a.counter.total())
	}
}

// TestPostgresTouchThrottling checks that reads slide the idle expiry with
// one narrow UPDATE only once enough of the idle window has passed, and
// re-send the cookie only then.
func TestPostgresTouchThrottling(t *testing.T) {
	t.Parallel()
	cfg := session.Config{IdleTimeout: 30 * time.Minute, TouchInterval: 3 * time.Minute}
	a := startPostgresInstance(t, pgtest.Schema(t), cfg, appHandler())
	c := a.client(t)
	fetchOK(t, c, a.URL+"/visit")
	var version int64
	versionOf := func() int64 {
		if err := pgxQueryRow(t, "SELECT version FROM "+a.table).Scan(&version); err != nil {
			t.Fatal(err)
		}
		return version
	}
	before := versionOf()

	for range 3 {
		*a.counter = statementCounter{}
		resp, _ := fetchOK(t, c, a.URL+"/read")
		if u := a.counter.updates.Load(); u != 0 {
			t.Fatalf("a read right after a write sent %d UPDATEs; want 0", u)
		}
		if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
			t.Fatalf("a read that moved no expiry re-sent the cookie: %q", sc)
		}
	}

	// Four minutes of the idle window have passed, by the database's clock.
	pgtest.Exec(t, "UPDATE "+a.table+" SET idle_expires_at = now() + interval '26 minutes'")
	*a.counter = statementCounter{}
	resp, _ := fetchOK(t, c, a.URL+"/read")
	if u := a.counter.updates.Load(); u != 1 {
		t.Fatalf("a read after 4 of 30 idle minutes sent %d UPDATEs; want 1 touch", u)
	}
	ck := setCookie(resp, "session")
	if ck == nil {
		t.Fatal("the touch did not re-send the cookie with its new expiry")
	}
	if until := time.Until(ck.Expires); until < 29*time.Minute || until > 31*time.Minute {
		t.Errorf("cookie expires in %v after the touch; want about 30m", until)
	}
	var idleLeft float64
	if err := pgxQueryRow(t, "SELECT extract(epoch FROM idle_expires_at - now()) FROM "+a.table).Scan(&idleLeft); err != nil {
		t.Fatal(err)
	}
	if idleLeft < 29*60 {
		t.Errorf("idle expiry %vs away after the touch; want about 30 minutes", idleLeft)
	}
	if v := versionOf(); v != before {
		t.Errorf("the touch changed the version %d -> %d; it must rewrite no data", before, v)
	}
	*a.counter = statementCounter{}
	fetchOK(t, c, a.URL+"/read")
	if u := a.counter.updates.Load(); u != 0 {
		t.Errorf("a read right after a touch sent %d UPDATEs; want 0", u)
	}

	pgtest.Exec(t, "UPDATE "+a.table+" SET idle_expires_at = now() - interval '1 second'")
	if _, body := fetchOK(t, c, a.URL+"/read"); body != "0" {
		t.Errorf("an idle-expired session still reads visits=%s", body)
	}
}

func TestPostgresOutageIs503AndRecovers(t *testing.T) {
	t.Parallel()
	proxy := pgtest.NewProxy(t)
	cfg := session.Config{
		UsePostgres:  true,
		DatabaseURL:  proxy.URL(),
		Table:        pgtest.Schema(t),
		Secret:       randomSecret(t),
		StoreTimeout: 2 * time.Second,
	}
	m, err := session.New(t.Context(), cfg, session.WithLogger(discardLogger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	server := httptest.NewServer(m.Handler(appHandler()))
	t.Cleanup(server.Close)
	srv := server.URL
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	fetchOK(t, c, srv+"/visit")

	proxy.Cut()
	for _, path := range []string{"/visit", "/read", "/login?user=ada"} {
		start := time.Now()
		resp, body := fetch(t, c, srv+path)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s during the outage: %d %q; want 503", path, resp.StatusCode, body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s during the outage took %v; the store timeout is 2s", path, d)
		}
	}
	if resp, _ := fetch(t, c, srv+"/noop"); resp.StatusCode != http.StatusOK {
		t.Errorf("a request that never touches its session failed during the outage: %d", resp.StatusCode)
	}

	proxy.Restore()
	var body string
	waitFor(t, "a 200 after the database came back", 15*time.Second, func() bool {
		var resp *http.Response
		resp, body = fetch(t, c, srv+"/visit")
		return resp.StatusCode == http.StatusOK
	})
	if body != "2" {
		t.Errorf("after recovery visits=%s; want 2 (the write before the outage kept, none during it)", body)
	}
}

func TestPostgresNewWithoutTableNamesTheFix(t *testing.T) {
	t.Parallel()
	cfg := session.Config{
		UsePostgres:      true,
		DatabaseURL:      pgtest.URL(t),
		Table:            pgtest.Schema(t),
		ManualMigrations: true,
	}
	_, err := session.New(t.Context(), cfg, session.WithLogger(discardLogger))
	if err == nil || !strings.Contains(err.Error(), "sessionctl migrate") {
		t.Fatalf("New with no table and SESSION_AUTO_MIGRATE=false = %v; want an error naming `sessionctl migrate`", err)
	}
}

func TestPostgresManagerPrunes(t *testing.T) {
	t.Parallel()
	table := pgtest.Schema(t)
	pool, err := pgxpool.New(t.Context(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := session.NewPostgresStore(t.Context(), pool, session.PostgresOptions{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	insertExpired(t, store, 5)
	live := &session.Record{Expiry: time.Now().Add(time.Hour)}
	if err := store.Insert(t.Context(), "live", live); err != nil {
		t.Fatal(err)
	}
	m, err := session.New(context.Background(), session.Config{PruneInterval: 10 * time.Millisecond}, session.WithStore(store), session.WithLogger(discardLogger))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the prune loop to remove the 5 expired rows and keep the live one", 10*time.Second, func() bool {
		var rows int
		if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		return rows == 1
	})
	m.Close()
	if _, err := store.Load(t.Context(), "live"); err != nil {
		t.Errorf("the live session was pruned: %v", err)
	}
	if err := pool.Ping(t.Context()); err != nil {
		t.Errorf("Manager.Close closed a pool it does not own: %v", err)
	}
}
