package main

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/redis/go-redis/v9"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/redisurl"
)

// runRedis is run for -store redis: the floor, the library on its Redis
// store and scs with its go-redis store, on one Redis, under a key prefix
// of the run's own.
func runRedis(ctx context.Context, opts options, progress io.Writer) (*report, error) {
	rep := &report{
		Store:       "redis",
		Date:        time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Workers:     opts.workers,
		Duration:    opts.duration.String(),
		Sessions:    opts.sessions,
		HotSessions: opts.hotSessions,
	}
	target, err := redisurl.Parse(opts.redisURL, false)
	if err != nil {
		return nil, fmt.Errorf("-redis-url %w", err)
	}
	admin := target.NewClient()
	defer admin.Close()
	info, err := admin.Info(ctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("connect to Redis at %s (-redis-url, TEST_REDIS_URL or REDIS_URL): %s", target.Where, redisurl.Redact(err.Error(), opts.redisURL))
	}
	rep.Machine = hostMachine()
	rep.Machine.Redis = "Redis " + infoField(info, "redis_version")
	pid, _ := strconv.Atoi(infoField(info, "process_id"))

	prefix := "sessionbench_" + randomHex(4) + ":"
	b := &bench{opts: opts, progress: progress, cookies: map[*server][]string{}}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := deleteKeys(ctx, admin, prefix); err != nil {
			fmt.Fprintf(progress, "sessionbench: delete the keys under %s: %v\n", prefix, err)
		}
	}()
	stop, err := b.startRedisServers(ctx, target, prefix, pid)
	if err != nil {
		return nil, err
	}
	defer stop()
	for _, wl := range opts.workloads {
		results, err := b.runWorkload(ctx, wl)
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w", wl.name, err)
		}
		rep.Results = append(rep.Results, results...)
	}
	return rep, nil
}

// startRedisServers starts the floor, two library servers (without and
// with an idle timeout) and, unless the URL is a cluster's, two scs
// servers likewise, each on a client of its own with -workers connections
// and a command counter.
func (b *bench) startRedisServers(ctx context.Context, target redisurl.Target, prefix string, pid int) (stop func(), err error) {
	var cleanup []func()
	stop = func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	newClient := func() (redis.UniversalClient, *commandCounter) {
		client := target.WithPoolSize(b.opts.workers).NewClient()
		counter := newCommandCounter()
		client.AddHook(counter)
		cleanup = append(cleanup, func() { client.Close() })
		return client, counter
	}
	start := func(name string, h http.Handler, counter counter) (*server, error) {
		s, err := startServer(name, h, counter)
		if err != nil {
			return nil, err
		}
		s.backends = func(context.Context) []int {
			if pid == 0 {
				return nil
			}
			return []int{pid}
		}
		cleanup = append(cleanup, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.close(ctx)
		})
		return s, nil
	}

	libClient, libCounter := newClient()
	store, err := session.NewRedisStore(libClient, session.RedisOptions{Prefix: prefix + "lib:"})
	if err != nil {
		return nil, err
	}
	newManager := func(idle time.Duration) (*session.Manager, error) {
		m, err := session.New(ctx, session.Config{Secret: randomHex(32), IdleTimeout: idle}, session.WithStore(store))
		if err != nil {
			return nil, err
		}
		cleanup = append(cleanup, m.Close)
		return m, nil
	}
	plain, err := newManager(0)
	if err != nil {
		return nil, err
	}
	idle, err := newManager(b.opts.idleTimeout)
	if err != nil {
		return nil, err
	}
	floorClient, floorCounter := newClient()
	if b.baseline, err = start("floor", (&floor{client: floorClient, prefix: prefix + "floor:"}).handler(), floorCounter); err != nil {
		return nil, err
	}
	if b.library, err = start("library", plain.Handler(libraryApp()), libCounter); err != nil {
		return nil, err
	}
	if b.libraryIdle, err = start("library", idle.Handler(libraryApp()), libCounter); err != nil {
		return nil, err
	}
	if target.Cluster {
		fmt.Fprintln(b.progress, "sessionbench: no scs server: its go-redis store takes a *redis.Client, which cannot use a cluster")
		return stop, nil
	}
	scsClient, scsCounter := newClient()
	newSCS := func(idle time.Duration) http.Handler {
		sm := scs.New()
		sm.Store = goredisstore.NewWithPrefix(scsClient.(*redis.Client), prefix+"scs:")
		sm.Lifetime = sessionLifetime
		sm.IdleTimeout = idle
		return sm.LoadAndSave(scsApp(sm))
	}
	if b.competitor, err = start("scs", newSCS(0), scsCounter); err != nil {
		return nil, err
	}
	if b.competitorIdle, err = start("scs", newSCS(b.opts.idleTimeout), scsCounter); err != nil {
		return nil, err
	}
	return stop, nil
}

// floor is the Redis baseline: one command per request that touches the
// session. A session is a string holding its JSON (GET to read, SET with
// the lifetime for a new one) and its writes go to a hash beside it (HSET,
// HINCRBY), which /dump reads; the floor is the least a request can cost,
// not a design to copy.
type floor struct {
	client redis.UniversalClient
	prefix string
}

func (f *floor) handler() http.Handler {
	mux := http.NewServeMux()
	key := func(r *http.Request) string { return f.prefix + sessionID(r) }
	hset := func(w http.ResponseWriter, r *http.Request, field string, n int64) {
		if err := f.client.HSet(r.Context(), key(r)+":w", field, n).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	}
	mux.HandleFunc("GET /untouched", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		data, err := f.client.Get(r.Context(), key(r)).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			http.Error(w, "no session", http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
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
		if n, ok := paramN(w, r.URL.Query()); ok {
			hset(w, r, "n", n)
		}
	})
	mux.HandleFunc("POST /new", func(w http.ResponseWriter, r *http.Request) {
		data, err := json.Marshal(map[string]user{"user": benchUser})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		id := randomHex(32)
		if err := f.client.Set(r.Context(), f.prefix+id, data, sessionLifetime).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: baselineCookie, Value: id, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteLaxMode, MaxAge: int(sessionLifetime / time.Second)})
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /hot", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if n, ok := paramN(w, q); ok {
			hset(w, r, q.Get("key"), n)
		}
	})
	counter := func(w http.ResponseWriter, r *http.Request) {
		n, err := f.client.HIncrBy(r.Context(), key(r)+":w", "counter", 1).Result()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	}
	// The floor of both counters is the one atomic HINCRBY.
	mux.HandleFunc("POST /counter", counter)
	mux.HandleFunc("POST /get-put", counter)
	mux.HandleFunc("GET /dump", func(w http.ResponseWriter, r *http.Request) {
		fields, err := f.client.HGetAll(r.Context(), key(r)+":w").Result()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		values := map[string]json.RawMessage{}
		for k, v := range fields {
			values[k] = json.RawMessage(v)
		}
		json.NewEncoder(w).Encode(values)
	})
	return mux
}

func init() {
	// scs's default codec is gob, which must know the types in interfaces.
	gob.Register(user{})
}

// scsApp is libraryApp written for scs: the same routes and answers. Its
// counter is a Get and a Put, as scs offers no atomic update.
func scsApp(sm *scs.SessionManager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /untouched", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		u, ok := sm.Get(r.Context(), "user").(user)
		if !ok {
			http.Error(w, "no session", http.StatusNotFound)
			return
		}
		io.WriteString(w, u.Name)
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := paramN(w, r.URL.Query()); ok {
			sm.Put(r.Context(), "n", n)
			io.WriteString(w, "ok")
		}
	})
	mux.HandleFunc("POST /new", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "user", benchUser)
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /hot", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if n, ok := paramN(w, q); ok {
			sm.Put(r.Context(), q.Get("key"), n)
			io.WriteString(w, "ok")
		}
	})
	getPut := func(w http.ResponseWriter, r *http.Request) {
		n := sm.GetInt64(r.Context(), "counter") + 1
		sm.Put(r.Context(), "counter", n)
		fmt.Fprint(w, n)
	}
	mux.HandleFunc("POST /counter", getPut)
	mux.HandleFunc("POST /get-put", getPut)
	mux.HandleFunc("GET /dump", func(w http.ResponseWriter, r *http.Request) {
		values := map[string]json.RawMessage{}
		for _, k := range sm.Keys(r.Context()) {
			v, err := json.Marshal(sm.Get(r.Context(), k))
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

// commandCounter is a go-redis hook counting the commands a client sends,
// by name, pipelined or not.
type commandCounter struct {
	mu     sync.Mutex
	counts statementCounts
}

func newCommandCounter() *commandCounter { return &commandCounter{counts: statementCounts{}} }

func (c *commandCounter) count(cmds ...redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range cmds {
		name := strings.ToUpper(cmd.Name())
		if connectionSetup[name] {
			continue
		}
		c.counts[name]++
	}
}

// connectionSetup names what go-redis sends when it opens a connection
// (through the same hooks), which no server sends for a request: a pool
// that opens one more connection during a measurement must not show it as
// the requests' cost, as pgx's tracer never shows PostgreSQL's start-up.
var connectionSetup = map[string]bool{"HELLO": true, "AUTH": true, "CLIENT": true, "SELECT": true, "READONLY": true}

func (c *commandCounter) snapshot() statementCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts.add(nil)
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.count(cmds...)
		return next(ctx, cmds)
	}
}

// infoField returns one field of an INFO reply.
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// deleteKeys deletes the run's keys. It scans, which a benchmark's
// teardown may.
func deleteKeys(ctx context.Context, client redis.UniversalClient, prefix string) error {
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Unlink(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, del)
	}
	return del(ctx, client.(*redis.Client))
}
