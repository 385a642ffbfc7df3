package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
)

// Both servers answer the same routes with the same responses; only how
// they reach the session differs. The library server goes through
// Manager.Handler; the baseline runs the one statement a hand-written
// session lookup needs and nothing else.
//
//	GET  /untouched      never looks at the session
//	GET  /read           answers the name stored under "user"
//	POST /write?n=N      sets "n" to N
//	POST /new            starts a session holding "user"
//	POST /hot?key=K&n=N  sets K to N
//	POST /counter        adds one to "counter", atomically
//	POST /get-put        adds one to "counter" by reading it, then setting
//	                     it (the library; the baseline: atomically)
//	GET  /dump           answers every value, for checking writes

// user is the value every session holds.
type user struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

var benchUser = user{ID: 42, Name: "Ada"}

// sessionLifetime is Config.Lifetime's default, which the library's server
// runs with; the baseline's cookie lives as long.
const sessionLifetime = 14 * 24 * time.Hour

// libraryApp is the application behind Manager.Handler.
func libraryApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /untouched", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		u, err := session.Value[user](session.FromContext(r.Context()), "user")
		if err != nil {
			http.Error(w, "no session", http.StatusNotFound)
			return
		}
		io.WriteString(w, u.Name)
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		n, ok := paramN(w, r.URL.Query())
		if !ok {
			return
		}
		setAndAnswer(w, r, "n", n)
	})
	mux.HandleFunc("POST /new", func(w http.ResponseWriter, r *http.Request) {
		setAndAnswer(w, r, "user", benchUser)
	})
	mux.HandleFunc("POST /hot", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, ok := paramN(w, q)
		if !ok {
			return
		}
		setAndAnswer(w, r, q.Get("key"), n)
	})
	mux.HandleFunc("POST /counter", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		n, err := session.Update(s, "counter", func(n int64, _ bool) (int64, error) { return n + 1, nil })
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("POST /get-put", func(w http.ResponseWriter, r *http.Request) {
		// A counter written without Update: read, then set. Two requests
		// that read the same value both write it plus one.
		s := session.FromContext(r.Context())
		n, err := session.Value[int64](s, "counter")
		if err != nil && !errors.Is(err, session.ErrNoValue) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := s.Set("counter", n+1); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n+1)
	})
	mux.HandleFunc("GET /dump", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		values := map[string]json.RawMessage{}
		keys, err := s.Keys()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, k := range keys {
			v, err := session.Value[json.RawMessage](s, k)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			values[k] = v
		}
		if len(values) == 0 {
			http.Error(w, "no session", http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(values)
	})
	return mux
}

// paramN returns the request's parameter n, or answers 400 and false.
func paramN(w http.ResponseWriter, q url.Values) (int64, bool) {
	n, err := strconv.ParseInt(q.Get("n"), 10, 64)
	if err != nil {
		http.Error(w, "bad n", http.StatusBadRequest)
		return 0, false
	}
	return n, true
}

func setAndAnswer(w http.ResponseWriter, r *http.Request, key string, value any) {
	if err := session.FromContext(r.Context()).Set(key, value); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	io.WriteString(w, "ok")
}

// baselineCookie names the baseline's cookie, which holds the row's id as
// it is: the baseline is the floor, not a design to copy.
const baselineCookie = "sid"

// baseline is the server without a session library: one statement per
// request that touches the session, on a table shaped like the library's.
type baseline struct {
	pool *pgxpool.Pool
	sql  baselineSQL
}

type baselineSQL struct {
	read, write, insert, hot, counter string
}

func newBaseline(pool *pgxpool.Pool, table string) *baseline {
	const live = " AND LEAST(expires_at, idle_expires_at) > now()"
	return &baseline{pool: pool, sql: baselineSQL{
		read:  "SELECT data FROM " + table + " WHERE id = $1" + live,
		write: "UPDATE " + table + " SET data = jsonb_set(data, '{n}', to_jsonb($2::bigint)), version = version + 1 WHERE id = $1" + live,
		insert: "INSERT INTO " + table + " (id, data, persistent, created_at, expires_at, version)" +
			" VALUES ($1, $2, true, now(), now() + interval '336 hours', 1)",
		hot: "UPDATE " + table + " SET data = jsonb_set(data, ARRAY[$2::text], to_jsonb($3::bigint)), version = version + 1 WHERE id = $1" + live,
		counter: "UPDATE " + table + " SET data = jsonb_set(data, '{counter}', to_jsonb(COALESCE((data->>'counter')::bigint, 0) + 1))," +
			" version = version + 1 WHERE id = $1" + live,
	}}
}

func (b *baseline) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /untouched", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		var data []byte
		err := b.pool.QueryRow(r.Context(), b.sql.read, sessionID(r)).Scan(&data)
		if answerFailure(w, err) {
			return
		}
		var values struct {
			User *user `json:"user"`
		}
		if err := json.Unmarshal(data, &values); err != nil || values.User == nil {
			http.Error(w, "no user", http.StatusNotFound)
			return
		}
		io.WriteString(w, values.User.Name)
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		n, ok := paramN(w, r.URL.Query())
		if !ok {
			return
		}
		b.exec(w, r, b.sql.write, sessionID(r), n)
	})
	mux.HandleFunc("POST /new", func(w http.ResponseWriter, r *http.Request) {
		data, err := json.Marshal(map[string]user{"user": benchUser})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		id := randomHex(32)
		if _, err := b.pool.Exec(r.Context(), b.sql.insert, id, data); answerFailure(w, err) {
			return
		}
		http.SetCookie(w, &http.Cookie{Name: baselineCookie, Value: id, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteLaxMode, MaxAge: int(sessionLifetime / time.Second)})
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /hot", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, ok := paramN(w, q)
		if !ok {
			return
		}
		b.exec(w, r, b.sql.hot, sessionID(r), q.Get("key"), n)
	})
	// The floor of both counters is the one atomic UPDATE.
	mux.HandleFunc("POST /counter", func(w http.ResponseWriter, r *http.Request) {
		b.exec(w, r, b.sql.counter, sessionID(r))
	})
	mux.HandleFunc("POST /get-put", func(w http.ResponseWriter, r *http.Request) {
		b.exec(w, r, b.sql.counter, sessionID(r))
	})
	mux.HandleFunc("GET /dump", func(w http.ResponseWriter, r *http.Request) {
		var data []byte
		err := b.pool.QueryRow(r.Context(), b.sql.read, sessionID(r)).Scan(&data)
		if answerFailure(w, err) {
			return
		}
		w.Write(data)
	})
	return mux
}

// exec runs one UPDATE on the request's session; no row is a 404.
func (b *baseline) exec(w http.ResponseWriter, r *http.Request, sql string, args ...any) {
	tag, err := b.pool.Exec(r.Context(), sql, args...)
	if answerFailure(w, err) {
		return
	}
	if tag.RowsAffected() == 0 {
		http.Error(w, "no session", http.StatusNotFound)
		return
	}
	io.WriteString(w, "ok")
}

func sessionID(r *http.Request) string {
	if c, err := r.Cookie(baselineCookie); err == nil {
		return c.Value
	}
	return ""
}

// answerFailure answers a failed query and reports whether it did.
func answerFailure(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, pgx.ErrNoRows):
		http.Error(w, "no session", http.StatusNotFound)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails; see crypto/rand.Read
	return hex.EncodeToString(b)
}

// server is one HTTP server under test, on a loopback port of its own.
type server struct {
	name string // "baseline" or "library"
	url  string
	srv  *http.Server
	// statements counts what the server sends to its database: SQL
	// statements to PostgreSQL, commands to Redis.
	statements counter
	// backends returns the process IDs of the database processes that
	// serve it: the pool's PostgreSQL backends, the Redis server.
	backends func(context.Context) []int
}

// counter counts what a server sends to its database, by kind.
type counter interface {
	snapshot() statementCounts
}

func startServer(name string, h http.Handler, statements counter) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the %s server: %w", name, err)
	}
	s := &server{
		name:       name,
		url:        "http://" + ln.Addr().String(),
		srv:        &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		statements: statements,
	}
	// Connection goroutines inherit the label, which lets a CPU profile
	// tell the servers apart at no cost per request.
	go pprof.Do(context.Background(), pprof.Labels("server", name), func(context.Context) { s.srv.Serve(ln) })
	return s, nil
}

func (s *server) close(ctx context.Context) {
	s.srv.Shutdown(ctx)
}

// statementKinds are the statements the counter tells apart, by first word.
var statementKinds = [...]string{"SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "ROLLBACK", "other"}

// statementCounts are counts by kind: the first word of an SQL statement,
// or the name of a Redis command.
type statementCounts map[string]int64

func (c statementCounts) total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

func (c statementCounts) minus(d statementCounts) statementCounts {
	out := statementCounts{}
	for k, v := range c {
		if v-d[k] != 0 {
			out[k] = v - d[k]
		}
	}
	return out
}

func (c statementCounts) add(d statementCounts) statementCounts {
	out := statementCounts{}
	for k, v := range c {
		out[k] = v
	}
	for k, v := range d {
		out[k] += v
	}
	return out
}

// statementCounter is a pgx QueryTracer and BatchTracer that counts every
// statement a pool sends (Query, QueryRow, Exec, each statement of a batch,
// and the BEGIN and COMMIT of a transaction).
type statementCounter struct {
	counts [len(statementKinds)]atomic.Int64
}

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.counts[kindOf(data.SQL)].Add(1)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// The statements of a pipelined batch (Update[T]'s two round trips) count
// one by one, as pgx.BatchTracer sees them.
func (c *statementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (c *statementCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	c.counts[kindOf(data.SQL)].Add(1)
}

func (c *statementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (c *statementCounter) snapshot() statementCounts {
	s := statementCounts{}
	for i := range c.counts {
		if n := c.counts[i].Load(); n > 0 {
			s[statementKinds[i]] = n
		}
	}
	return s
}

func kindOf(sql string) int {
	word, _, _ := strings.Cut(strings.TrimSpace(sql), " ")
	for i, k := range statementKinds[:len(statementKinds)-1] {
		if strings.EqualFold(word, k) {
			return i
		}
	}
	return len(statementKinds) - 1
}

// backendPIDs lists the backends of the pool whose connections carry
// application_name appName.
func backendPIDs(ctx context.Context, admin *pgxpool.Pool, appName string) []int {
	rows, err := admin.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", appName)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil
	}
	return pids
}
