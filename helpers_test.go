// Helpers shared by the package's external tests: a test server on the
// memory store, clients with cookie jars, a spy on the store, PostgreSQL
// instances, and the small application most tests drive.
package session_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/pgtest"
)

// lookupFrom turns env into a lookup function for ConfigFromLookup.
func lookupFrom(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// problemVariables returns the sorted, de-duplicated variables err names.
func problemVariables(err error) []string {
	var vars []string
	for _, ce := range configErrors(err) {
		vars = append(vars, ce.Variable)
	}
	slices.Sort(vars)
	return slices.Compact(vars)
}

const goodSecret = "Zk3vQ9pL2mX7rT1wY8bN4cF6hJ0dS5gA"

// rawCookieGet GETs path on ts with header as the whole Cookie header.
func rawCookieGet(t *testing.T, ts *testServer, path, header string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if header != "" {
		req.Header.Set("Cookie", header)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// issue returns a fresh cookie value from ts for a session holding
// color=blue.
func issue(t *testing.T, ts *testServer, name string) string {
	t.Helper()
	resp, _ := rawCookieGet(t, ts, "/set?color=blue", "")
	ck := setCookie(resp, name)
	if ck == nil {
		t.Fatalf("no %s cookie issued", name)
	}
	return ck.Value
}

// serve runs one request through h, with cookieHeader as its Cookie header.
func serve(h http.Handler, path, cookieHeader string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", path, nil)
	if cookieHeader != "" {
		req.Header["Cookie"] = []string{cookieHeader}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// setCookieOf returns the session cookie a recorded response set, or nil.
func setCookieOf(rec *httptest.ResponseRecorder) *http.Cookie {
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == "session" {
			return ck
		}
	}
	return nil
}

// pgInstance is one application instance: a Manager on its own pool, on a
// table other instances may share.
type pgInstance struct {
	*testServer
	counter *statementCounter
	table   string
}

// startPostgresInstance starts an app instance on table with its own pool,
// counting the statements that pool sends. It runs on the real clock,
// which PostgreSQL compares expiry against.
func startPostgresInstance(t *testing.T, table string, cfg session.Config, handler http.Handler) *pgInstance {
	t.Helper()
	counter := &statementCounter{}
	poolCfg := pgtest.Config(t, pgtest.URL(t))
	poolCfg.ConnConfig.Tracer = counter
	store, err := session.NewPostgresStore(t.Context(), pgtest.NewPool(t, poolCfg), session.PostgresOptions{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	*counter = statementCounter{}
	if cfg.Secret == "" {
		cfg.Secret = "shared-secret-of-every-instance-0123456789"
	}
	ts := startServer(t, serverSetup{cfg: cfg, store: newSpyStore(store), options: []session.Option{session.WithClock(time.Now)}}, handler)
	return &pgInstance{testServer: ts, counter: counter, table: table}
}

// twoInstances starts two instances of handler on one table: two replicas
// of an application behind a load balancer.
func twoInstances(t *testing.T, handler http.Handler) (a, b *pgInstance) {
	t.Helper()
	table := pgtest.Schema(t)
	return startPostgresInstance(t, table, session.Config{}, handler), startPostgresInstance(t, table, session.Config{}, handler)
}

// withCookieOf returns a client of a that holds the session cookie c holds
// for b: the same browser talking to another instance behind a balancer.
func withCookieOf(t *testing.T, a *pgInstance, c *http.Client, b *pgInstance) *http.Client {
	t.Helper()
	other := a.client(t)
	value := jarCookie(t, c, b.URL, "session")
	if value == "" {
		t.Fatal("the client holds no session cookie")
	}
	req, _ := http.NewRequest("GET", a.URL, nil)
	other.Jar.SetCookies(req.URL, []*http.Cookie{{Name: "session", Value: value, Path: "/"}})
	return other
}

// startFunc starts a server running handler on one kind of store and
// returns it with a function counting the records its store holds.
type startFunc func(handler http.Handler) (ts *testServer, records func() int)

// onEachStore runs test on the memory store, on PostgreSQL, and on Redis
// (a standalone server and a cluster), for behaviour that must not depend
// on the store.
func onEachStore(t *testing.T, test func(t *testing.T, start startFunc)) {
	onEachStoreWith(t, session.Config{}, test)
}

// onEachStoreWith is onEachStore with the Managers configured by cfg.
func onEachStoreWith(t *testing.T, cfg session.Config, test func(t *testing.T, start startFunc)) {
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		test(t, func(handler http.Handler) (*testServer, func() int) {
			ts := startServer(t, serverSetup{cfg: cfg}, handler)
			return ts, func() int { return session.MemoryRecords(ts.store.Store) }
		})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, func(handler http.Handler) (*testServer, func() int) {
			inst := startPostgresInstance(t, pgtest.Schema(t), cfg, handler)
			return inst.testServer, func() int {
				var n int
				if err := pgxQueryRow(t, "SELECT count(*) FROM "+inst.table).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
		})
	})
	for _, setup := range redisSetups {
		t.Run("redis-"+setup.name, func(t *testing.T) {
			t.Parallel()
			test(t, func(handler http.Handler) (*testServer, func() int) {
				inst := startRedisInstance(t, setup.url(t), "", cfg, handler)
				return inst.testServer, func() int { return inst.records(t) }
			})
		})
	}
}

// pgxQueryRow runs a query on a fresh pool of the test server.
func pgxQueryRow(t *testing.T, sql string, args ...any) interface{ Scan(...any) error } {
	t.Helper()
	pool := pgtest.Pool(t)
	return pool.QueryRow(t.Context(), sql, args...)
}

// fakeClock is a clock the tests move by hand, for session.WithClock and the
// memory store.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// spyStore wraps a Store, counting calls per method and failing them on
// demand.
type spyStore struct {
	session.Store

	mu    sync.Mutex
	calls map[string]int
	fail  func(method string) error
}

func newSpyStore(inner session.Store) *spyStore {
	return &spyStore{Store: inner, calls: map[string]int{}}
}

// call counts method and returns the injected failure, if any.
func (s *spyStore) call(method string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	if s.fail != nil {
		return s.fail(method)
	}
	return nil
}

// counts returns the calls made since the last reset and starts counting
// afresh. Prune is left out: the Manager's background loop calls it.
func (s *spyStore) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.calls
	delete(out, "Prune")
	s.calls = map[string]int{}
	return out
}

// failWith makes every call for which fail returns an error fail with it;
// nil restores the store.
func (s *spyStore) failWith(fail func(method string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
}

func (s *spyStore) Load(ctx context.Context, key string) (*session.Record, error) {
	if err := s.call("Load"); err != nil {
		return nil, err
	}
	return s.Store.Load(ctx, key)
}

func (s *spyStore) Insert(ctx context.Context, key string, rec *session.Record) error {
	if err := s.call("Insert"); err != nil {
		return err
	}
	return s.Store.Insert(ctx, key, rec)
}

func (s *spyStore) Apply(ctx context.Context, key string, change session.Change) (*session.Record, error) {
	// An Apply that changes no value is a touch of the idle expiry, which
	// the tests count apart from writes.
	method := "Apply"
	if !change.Clear && len(change.Delete) == 0 && len(change.Set) == 0 && change.UserID == nil && change.Persistent == nil {
		method = "Touch"
	}
	if err := s.call(method); err != nil {
		return nil, err
	}
	return s.Store.Apply(ctx, key, change)
}

func (s *spyStore) Rekey(ctx context.Context, oldKey, newKey string, change session.Change, fresh *session.Record) (*session.Record, error) {
	if err := s.call("Rekey"); err != nil {
		return nil, err
	}
	return s.Store.Rekey(ctx, oldKey, newKey, change, fresh)
}

func (s *spyStore) Modify(ctx context.Context, key string, fn func(*session.Record) error) (*session.Record, error) {
	if err := s.call("Modify"); err != nil {
		return nil, err
	}
	return s.Store.Modify(ctx, key, fn)
}

func (s *spyStore) Destroy(ctx context.Context, key string) (*session.Info, error) {
	if err := s.call("Destroy"); err != nil {
		return nil, err
	}
	return s.Store.Destroy(ctx, key)
}

func (s *spyStore) DestroyUser(ctx context.Context, userID, keep string) ([]session.Info, error) {
	if err := s.call("DestroyUser"); err != nil {
		return nil, err
	}
	return s.Store.(session.UserIndex).DestroyUser(ctx, userID, keep)
}

func (s *spyStore) ListUser(ctx context.Context, userID string) ([]session.Info, error) {
	if err := s.call("ListUser"); err != nil {
		return nil, err
	}
	return s.Store.(session.UserIndex).ListUser(ctx, userID)
}

func (s *spyStore) TrimUser(ctx context.Context, userID string, max int) ([]session.Info, error) {
	if err := s.call("TrimUser"); err != nil {
		return nil, err
	}
	return s.Store.(session.UserIndex).TrimUser(ctx, userID, max)
}

func (s *spyStore) Prune(ctx context.Context, limit int) ([]session.Info, error) {
	if err := s.call("Prune"); err != nil {
		return nil, err
	}
	return s.Store.(session.Pruner).Prune(ctx, limit)
}

// randomSecret returns a production-grade secret.
func randomSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var discardLogger = slog.New(slog.DiscardHandler)

// serverSetup describes a test server; every zero field has a default.
type serverSetup struct {
	cfg      session.Config   // Secret defaults to a random one
	clock    *fakeClock       // default: a new fake clock
	store    *spyStore        // default: a spy on a memory store on clock
	options  []session.Option // applied after the defaults
	tls      bool
	errorLog *log.Logger
}

// testServer is a real HTTP server running handler behind a Manager.
type testServer struct {
	*httptest.Server
	manager *session.Manager
	store   *spyStore
	clock   *fakeClock
}

func startServer(t *testing.T, setup serverSetup, handler http.Handler) *testServer {
	t.Helper()
	if setup.cfg.Secret == "" {
		setup.cfg.Secret = randomSecret(t)
	}
	if setup.clock == nil {
		setup.clock = newFakeClock()
	}
	if setup.store == nil {
		setup.store = newSpyStore(session.NewMemoryStoreOnClock(setup.clock.Now))
	}
	opts := append([]session.Option{
		session.WithStore(setup.store),
		session.WithClock(setup.clock.Now),
		session.WithLogger(discardLogger),
	}, setup.options...)
	m, err := session.New(context.Background(), setup.cfg, opts...)
	if err != nil {
		t.Fatalf("session.New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	srv := httptest.NewUnstartedServer(m.Handler(handler))
	srv.Config.ErrorLog = setup.errorLog
	if setup.tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, manager: m, store: setup.store, clock: setup.clock}
}

// client returns a client with its own cookie jar: one browser.
func (ts *testServer) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: ts.Client().Transport, Jar: jar}
}

// fetch GETs ts.URL+path with c and returns the response, its body read.
func fetch(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(body)
}

// fetchOK is fetch that insists on 200 OK.
func fetchOK(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, body := fetch(t, c, url)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %q; want 200", url, resp.StatusCode, body)
	}
	return resp, body
}

// setCookie returns the response's Set-Cookie named name, or nil.
func setCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// jarCookie returns the value c's jar holds for name at rawURL, or "".
func jarCookie(t *testing.T, c *http.Client, rawURL, name string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// appHandler is a small application over the session API, one route per
// operation. Any session error is answered with 500 and the error text.
func appHandler() http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	mux.HandleFunc("/noop", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		n, _ := session.Value[int](s, "visits")
		if err := s.Set("visits", n+1); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, n+1)
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		n, _ := session.Value[int](session.FromContext(r.Context()), "visits")
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		for k, v := range r.URL.Query() {
			if err := s.Set(k, v[0]); err != nil {
				fail(w, err)
				return
			}
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		v, _ := session.Value[string](session.FromContext(r.Context()), r.URL.Query().Get("key"))
		io.WriteString(w, v)
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if err := errors.Join(s.Renew(), s.SetUser(r.URL.Query().Get("user"))); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		user, err := session.FromContext(r.Context()).UserID()
		if err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, user)
	})
	mux.HandleFunc("/key", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, session.CurrentKey(session.FromContext(r.Context())))
	})
	mux.HandleFunc("/dump", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		keys, err := s.Keys()
		if err != nil {
			fail(w, err)
			return
		}
		values := map[string]json.RawMessage{}
		for _, k := range keys {
			if values[k], err = session.Value[json.RawMessage](s, k); err != nil {
				fail(w, err)
				return
			}
		}
		json.NewEncoder(w).Encode(values)
	})
	mux.HandleFunc("/destroy", func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Destroy(); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	return mux
}

// configErrors returns the individual problems in an error from
// ConfigFromEnv, Validate or New.
func configErrors(err error) []*session.ConfigError {
	var out []*session.ConfigError
	var walk func(error)
	walk = func(err error) {
		if ce, ok := err.(*session.ConfigError); ok {
			out = append(out, ce)
			return
		}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				walk(e)
			}
		} else if inner := errors.Unwrap(err); inner != nil {
			walk(inner)
		}
	}
	walk(err)
	return out
}

// syncBuffer is a bytes.Buffer safe for the server's logging goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pgApp is one application instance on a PostgreSQL pool the test can
// inspect: pool statistics, the rows, the locks.
type pgApp struct {
	manager *session.Manager
	pool    *pgxpool.Pool
	table   string
	url     string
}

// startPostgresApp serves handler behind a Manager on a new pool made from
// poolCfg, storing sessions in table. Options come after the defaults (a
// discarded log), so they can replace them.
func startPostgresApp(t *testing.T, poolCfg *pgxpool.Config, table string, cfg session.Config, handler http.Handler, opts ...session.Option) *pgApp {
	t.Helper()
	pool := pgtest.NewPool(t, poolCfg)
	store, err := session.NewPostgresStore(t.Context(), pool, session.PostgresOptions{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Secret == "" {
		cfg.Secret = randomSecret(t)
	}
	opts = append([]session.Option{session.WithStore(store), session.WithLogger(discardLogger)}, opts...)
	m, err := session.New(t.Context(), cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv := httptest.NewServer(m.Handler(handler))
	t.Cleanup(srv.Close)
	return &pgApp{manager: m, pool: pool, table: table, url: srv.URL}
}

// browser returns a client with a cookie jar of its own.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Transport: &http.Transport{}}
}

// waitFor polls cond, which asks the database, the network or the runtime
// something, until it holds, and fails the test if it does not within the
// deadline.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	if !poll(within, cond) {
		t.Fatalf("after %v: still waiting for %s", within, what)
	}
}

// poll calls cond until it holds or within passes, and reports whether it
// held: the one polling loop of the tests, for conditions no channel can
// signal.
func poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond) // polling something outside the test, not ordering goroutines
	}
	return true
}

// noConnectionsHeld waits until the pool has every connection back.
func noConnectionsHeld(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	waitFor(t, "the pool to get its connections back", 10*time.Second, func() bool {
		return pool.Stat().AcquiredConns() == 0
	})
}

// countBackends counts the server's other connections whose query mentions
// schema and that meet condition; admin is a pool of the test's.
func countBackends(t *testing.T, admin *pgxpool.Pool, schema, condition string) int {
	t.Helper()
	var n int
	err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
		WHERE `+condition+` AND strpos(query, $1) > 0 AND pid <> pg_backend_pid()`, schema).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func schemaOf(table string) string { return strings.TrimSuffix(table, ".session") }

// incrementOnTwo runs workers clients at once, alternately ca on aURL and
// cb on bURL (one browser's session on two instances), each sending each
// GETs of /incr in turn, and reports every answer that is not a 200.
func incrementOnTwo(t *testing.T, ca *http.Client, aURL string, cb *http.Client, bURL string, workers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range workers {
		client, url := ca, aURL
		if i%2 == 1 {
			client, url = cb, bURL
		}
		wg.Go(func() {
			for range each {
				resp, err := client.Get(url + "/incr")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("increment: status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
}

// incrHandler serves /incr, an atomic increment of "counter" that answers
// the way the error handler would when the store fails, and appHandler's
// routes.
func incrHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) {
		n, err := session.Update(session.FromContext(r.Context()), "counter", func(n int, _ bool) (int, error) { return n + 1, nil })
		if err != nil {
			session.DefaultErrorHandler(w, r, err)
			return
		}
		fmt.Fprint(w, n)
	})
	return mux
}

// randomToken returns a token shaped like the library's, which it never
// issued.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// handlerFunc runs step in a request and answers 200, or 500 with the
// failures step reported. It makes a test's assertions inside the handler
// visible to the client side.
func handlerFunc(step func(s *session.Session, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := step(session.FromContext(r.Context()), r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
}

// sessionOnlyCookie sends exactly one session cookie, bypassing any jar.
func sessionOnlyCookie(t *testing.T, ts *testServer, path, value string) (*http.Response, string) {
	t.Helper()
	return rawCookieGet(t, ts, path, "session="+value)
}

// gate lets a test hold requests after their session has loaded.
type gate struct {
	loaded  chan string
	release map[string]chan struct{}
}

func newGate(names ...string) *gate {
	g := &gate{loaded: make(chan string, len(names)), release: map[string]chan struct{}{}}
	for _, n := range names {
		g.release[n] = make(chan struct{})
	}
	return g
}

// handler loads the session, reports it loaded, waits for its release and
// then sets key=value from the query ("name" names the request).
func (g *gate) handler() http.Handler {
	return handlerFunc(func(s *session.Session, r *http.Request) error {
		if err := s.Err(); err != nil {
			return err
		}
		name := r.URL.Query().Get("name")
		g.loaded <- name
		<-g.release[name]
		return s.Set(name, "set by "+name)
	})
}

// newPostgresStore returns a migrated store in a schema of its own, on a pool
// of its own.
func newPostgresStore(t testing.TB, opts session.PostgresOptions) *session.PostgresStore {
	t.Helper()
	if opts.Table == "" {
		opts.Table = pgtest.Schema(t)
	}
	s, err := session.NewPostgresStore(t.Context(), pgtest.Pool(t), opts)
	if err != nil {
		t.Fatalf("NewPostgresStore: %v", err)
	}
	return s.(*session.PostgresStore)
}

// defaultLifetime is Config.Lifetime's documented default.
const defaultLifetime = 14 * 24 * time.Hour

// chain returns err and everything it wraps.
func chain(err error) []error {
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if inner := u.Unwrap(); inner != nil {
			out = append(out, chain(inner)...)
		}
	case interface{ Unwrap() []error }:
		for _, inner := range u.Unwrap() {
			out = append(out, chain(inner)...)
		}
	}
	return out
}

// closedPort returns a port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// statementCounter is a pgx tracer counting the statements sent, by their
// first word.
type statementCounter struct {
	selects, inserts, updates, deletes atomic.Int64
	// roundTrips counts what went to the server and waited for its
	// answer: a statement on its own, or a pipelined batch of them.
	roundTrips atomic.Int64
}

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.roundTrips.Add(1)
	c.count(data.SQL)
	return ctx
}

func (c *statementCounter) count(sql string) {
	switch verb, _, _ := strings.Cut(strings.TrimSpace(sql), " "); verb {
	case "SELECT":
		c.selects.Add(1)
	case "INSERT":
		c.inserts.Add(1)
	case "UPDATE":
		c.updates.Add(1)
	case "DELETE":
		c.deletes.Add(1)
	}
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *statementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.roundTrips.Add(1)
	return ctx
}

func (c *statementCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	c.count(data.SQL)
}

func (c *statementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (c *statementCounter) total() int64 {
	return c.selects.Load() + c.inserts.Load() + c.updates.Load() + c.deletes.Load()
}

// countedStore returns a store whose pool counts statements, counting from
// zero once the store is ready.
func countedStore(t *testing.T, opts session.PostgresOptions) (*session.PostgresStore, *statementCounter) {
	t.Helper()
	counter := &statementCounter{}
	cfg := pgtest.Config(t, pgtest.URL(t))
	cfg.ConnConfig.Tracer = counter
	opts.Table = pgtest.Schema(t)
	s, err := session.NewPostgresStore(t.Context(), pgtest.NewPool(t, cfg), opts)
	if err != nil {
		t.Fatal(err)
	}
	*counter = statementCounter{}
	return s.(*session.PostgresStore), counter
}

// insertExpired stores n records whose deadline passed an hour ago.
func insertExpired(t *testing.T, s session.Store, n int) {
	t.Helper()
	hourAgo := time.Now().Add(-time.Hour)
	for i := range n {
		rec := &session.Record{Created: hourAgo.Add(-time.Hour), Expiry: hourAgo}
		if err := s.Insert(t.Context(), fmt.Sprintf("expired-%d", i), rec); err != nil {
			t.Fatal(err)
		}
	}
}
