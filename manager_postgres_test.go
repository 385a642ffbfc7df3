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
	incrementOnTwo(t, c, a.URL, onB, b.URL, n, 1)
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
	a := startPostgresInstance(t, pgtest.Schema(t), session.Config{}, appHandler())
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
	// A trigger on writes of the values column counts them: a touch must
	// make none. (This used to read the version column, which is no longer
	// kept.)
	schema := schemaOf(a.table)
	pgtest.Exec(t, "CREATE TABLE "+schema+".data_writes (n int)")
	pgtest.Exec(t, "CREATE FUNCTION "+schema+".count_data_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO "+schema+".data_writes VALUES (1); RETURN NEW; END $$")
	pgtest.Exec(t, "CREATE TRIGGER count_data_writes BEFORE UPDATE OF data ON "+a.table+" FOR EACH ROW EXECUTE FUNCTION "+schema+".count_data_write()")
	dataWrites := func() int {
		var n int
		if err := pgxQueryRow(t, "SELECT count(*) FROM "+schema+".data_writes").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := dataWrites()

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
	if n := dataWrites(); n != before {
		t.Errorf("the touch wrote the values column %d times; it must rewrite no data", n-before)
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

// TestPostgresUpdateRoundTrips: session.Update, the README's way to keep a
// counter or a cart, costs one INSERT for a new session; two round trips
// on a session this process did not write last with Update, reading
// nothing before them (BEGIN with the locked read, then the UPDATE with
// COMMIT); and one UPDATE, the price of a plain write, on a session it
// did. It cost five before issue 13; the single UPDATE replaced the two
// round trips on purpose, for the counter's target (see recentRecords).
func TestPostgresUpdateRoundTrips(t *testing.T) {
	t.Parallel()
	a := startPostgresInstance(t, pgtest.Schema(t), session.Config{}, incrHandler())
	c := a.client(t)
	*a.counter = statementCounter{}
	if _, body := fetchOK(t, c, a.URL+"/incr"); body != "1" {
		t.Fatalf("first increment = %s", body)
	}
	if rt, total := a.counter.roundTrips.Load(), a.counter.total(); rt != 1 || a.counter.inserts.Load() != 1 || total != 1 {
		t.Errorf("an Update on a new session: %d round trips, %d statements; want one INSERT", rt, total)
	}
	*a.counter = statementCounter{}
	if _, body := fetchOK(t, c, a.URL+"/incr"); body != "2" {
		t.Fatalf("second increment = %s", body)
	}
	if rt, s, u := a.counter.roundTrips.Load(), a.counter.selects.Load(), a.counter.updates.Load(); rt != 2 || s != 1 || u != 1 {
		t.Errorf("an Update on a session stored by an INSERT: %d round trips, %d SELECTs, %d UPDATEs; want 2, the one locked read and one UPDATE", rt, s, u)
	}
	for want := 3; want <= 5; want++ {
		*a.counter = statementCounter{}
		if _, body := fetchOK(t, c, a.URL+"/incr"); body != fmt.Sprint(want) {
			t.Fatalf("increment = %s, want %d", body, want)
		}
		if rt, total, u := a.counter.roundTrips.Load(), a.counter.total(), a.counter.updates.Load(); rt != 1 || total != 1 || u != 1 {
			t.Errorf("an Update after an Update: %d round trips, %d statements; want one UPDATE", rt, total)
		}
	}
	// A write that is not an Update changes the row: the next Update reads
	// it again, under lock, and sees the write.
	fetchOK(t, c, a.URL+"/set?other=x")
	*a.counter = statementCounter{}
	if _, body := fetchOK(t, c, a.URL+"/incr"); body != "6" {
		t.Fatalf("increment after a Set = %s, want 6", body)
	}
	if rt, s := a.counter.roundTrips.Load(), a.counter.selects.Load(); rt != 2 || s != 1 {
		t.Errorf("an Update after a Set: %d round trips, %d SELECTs; want the locked read's 2 and 1", rt, s)
	}
}

// TestPostgresUpdateSeesAnotherInstance: an Update on a session this
// instance wrote last, after another instance changed it, runs on the
// session as the other instance left it: nothing the other wrote is lost,
// and its increments count.
func TestPostgresUpdateSeesAnotherInstance(t *testing.T) {
	t.Parallel()
	a, b := twoInstances(t, incrHandler())
	c := a.client(t)
	for want := 1; want <= 3; want++ {
		if _, body := fetchOK(t, c, a.URL+"/incr"); body != fmt.Sprint(want) {
			t.Fatalf("increment on a = %s, want %d", body, want)
		}
	}
	onB := withCookieOf(t, b, c, a)
	if _, body := fetchOK(t, onB, b.URL+"/incr"); body != "4" {
		t.Fatalf("increment on b = %s, want 4", body)
	}
	fetchOK(t, onB, b.URL+"/set?from=b")
	*a.counter = statementCounter{}
	if _, body := fetchOK(t, c, a.URL+"/incr"); body != "5" {
		t.Fatalf("increment on a after b's = %s, want 5", body)
	}
	// The UPDATE on the version a wrote matched nothing; the locked read
	// then found b's.
	if u, s := a.counter.updates.Load(), a.counter.selects.Load(); u != 2 || s != 1 {
		t.Errorf("a's Update after b's writes sent %d UPDATEs and %d SELECTs; want the one that missed, the locked read and its UPDATE", u, s)
	}
	if _, body := fetchOK(t, c, a.URL+"/get?key=from"); body != "b" {
		t.Errorf("b's value after a's Update = %q, want b", body)
	}
}

// TestPostgresUpdateAfterLogoutElsewhere: an Update on a session this
// instance wrote last, after another instance ended it, never brings it
// back: the request gets a new session, and the old one stays gone.
func TestPostgresUpdateAfterLogoutElsewhere(t *testing.T) {
	t.Parallel()
	a, b := twoInstances(t, incrHandler())
	c := a.client(t)
	fetchOK(t, c, a.URL+"/incr")
	fetchOK(t, c, a.URL+"/incr")
	_, oldKey := fetchOK(t, c, a.URL+"/key")
	fetchOK(t, withCookieOf(t, b, c, a), b.URL+"/destroy")
	if _, body := fetchOK(t, c, a.URL+"/incr"); body != "1" {
		t.Errorf("increment after a logout on b = %s, want 1 (a new session)", body)
	}
	var n int
	if err := pgtest.Pool(t).QueryRow(t.Context(), "SELECT count(*) FROM "+a.table+" WHERE id = $1", oldKey).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("the session ended on b is back in the table")
	}
}

// TestPostgresIncrementsAcrossInstancesAreExact: clients of one session on
// two instances increment at once, so that each instance's one-UPDATE
// attempts keep finding the row changed by the other; every increment
// that got a 200 counts, once.
func TestPostgresIncrementsAcrossInstancesAreExact(t *testing.T) {
	t.Parallel()
	a, b := twoInstances(t, incrHandler())
	c := a.client(t)
	fetchOK(t, c, a.URL+"/incr")
	onB := withCookieOf(t, b, c, a)
	const workers, each = 6, 30
	incrementOnTwo(t, c, a.URL, onB, b.URL, workers, each)
	_, body := fetchOK(t, c, a.URL+"/incr")
	if want := strconv.Itoa(1 + workers*each + 1); body != want {
		t.Errorf("counter = %s after %d increments on two instances, want %s", body, workers*each, want)
	}
}

// TestPostgresWritesStayHOT: writes to a busy session with an idle timeout
// change no indexed column (the idle expiry slides once per TouchInterval,
// not at every write), so PostgreSQL makes them HOT updates: no new index
// entries, no index bloat. Before issue 13 every write slid the expiry and
// none was HOT.
func TestPostgresWritesStayHOT(t *testing.T) {
	t.Parallel()
	a := startPostgresInstance(t, pgtest.Schema(t), session.Config{IdleTimeout: 30 * time.Minute}, appHandler())
	c := a.client(t)
	fetchOK(t, c, a.URL+"/set?n=0")
	const writes = 20
	for i := range writes {
		fetchOK(t, c, fmt.Sprintf("%s/set?n=%d", a.URL, i+1))
	}
	var updates, hot int64
	admin := pgtest.Pool(t)
	// The server publishes its statistics a moment after each transaction.
	waitFor(t, "the table's statistics to count the writes", 10*time.Second, func() bool {
		err := admin.QueryRow(t.Context(), "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = $1::regclass", a.table).Scan(&updates, &hot)
		if err != nil {
			t.Fatal(err)
		}
		return updates >= writes
	})
	if hot != updates {
		t.Errorf("%d of %d writes were HOT updates; want all", hot, updates)
	}
}
