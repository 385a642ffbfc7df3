// Command sessionbench measures the session library end to end against
// PostgreSQL or Redis. In one run it starts an HTTP server on the library
// with its PostgreSQL store and a baseline server with no session library,
// which makes exactly the one query a request needs, then drives both over
// loopback with the same closed-loop load and prints, per workload,
// throughput, latency, errors, SQL statements per request and the
// library's throughput as a ratio of the baseline's.
//
//	go run ./cmd/sessionbench -duration 10s
//	go run ./cmd/sessionbench -store redis -redis-url redis://127.0.0.1:6379/0
//
// It works in a schema of its own, sessionbench_<random>, dropped at the
// end. Each workload runs in rounds of baseline, library, library,
// baseline, slices of at most a second, so that drift (autovacuum, a
// warming cache, other load on the machine) falls on both servers alike.
//
// With -store redis the library runs on its Redis store, the baseline (the
// floor) makes one Redis command per request (GET to read, HSET or HINCRBY
// to write, SET for a new session), and a third server runs
// alexedwards/scs with its go-redis store on the same Redis and routes,
// each round then going floor, library, scs, scs, library, floor. Its keys
// are under sessionbench_<random>:, deleted at the end.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
)

// options are the command's flags.
type options struct {
	store       string // "postgres" or "redis"
	redisURL    string
	databaseURL string
	workers     int
	duration    time.Duration
	sessions    int
	hotSessions int
	workloads   []workload
	idleTimeout time.Duration
	cpuProfile  string
	json        bool
	// seed is how many live and how many expired sessions each table
	// holds before the workloads (scale.go).
	seed int
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, opts, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		os.Exit(1)
	}
	rep.Command = "go run ./cmd/sessionbench " + strings.Join(os.Args[1:], " ")
	if opts.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.writeTable(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		os.Exit(1)
	}
	if problems := rep.failures(); len(problems) > 0 {
		fmt.Fprintln(os.Stderr, "sessionbench: FAILED:\n  "+strings.Join(problems, "\n  "))
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("sessionbench", flag.ContinueOnError)
	defaultURL := cmpOr(os.Getenv("TEST_DATABASE_URL"), os.Getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/test")
	var opts options
	var names string
	fs.StringVar(&opts.store, "store", "postgres", "the library's store: postgres or redis")
	fs.StringVar(&opts.databaseURL, "database-url", defaultURL, "PostgreSQL `URL` (default: TEST_DATABASE_URL, else DATABASE_URL)")
	fs.StringVar(&opts.redisURL, "redis-url", cmpOr(os.Getenv("TEST_REDIS_URL"), os.Getenv("REDIS_URL"), "redis://127.0.0.1:6379/0"),
		"Redis `URL` for -store redis (default: TEST_REDIS_URL, else REDIS_URL); a cluster URL runs no scs server, whose store cannot use one")
	fs.IntVar(&opts.workers, "workers", 16, "concurrent closed-loop clients, each with its own connection; also each server's pool size")
	fs.DurationVar(&opts.duration, "duration", 10*time.Second, "measured time per workload per server")
	fs.IntVar(&opts.sessions, "sessions", 1000, "sessions per server, shared out among the workers")
	fs.IntVar(&opts.hotSessions, "hot-sessions", 4, "sessions all workers share in the hot workload")
	fs.DurationVar(&opts.idleTimeout, "idle-timeout", 30*time.Minute, "the library's IdleTimeout in the read-idle workload (TouchInterval is its default, a tenth)")
	fs.StringVar(&names, "workloads", "", "comma-separated `list` of workloads (default all: "+workloadNames()+")")
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of each workload to `file`, with the workload's name before the extension; pprof -tagfocus server=library shows the library server")
	fs.BoolVar(&opts.json, "json", false, "print the results as JSON")
	fs.IntVar(&opts.seed, "seed", 0, "fill each table with `N` live and N expired sessions before the workloads (PostgreSQL); with read selected, prune the expired ones under the read load at the end")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	var err error
	if opts.workloads, err = selectWorkloads(names); err != nil {
		return opts, err
	}
	return opts, opts.validate()
}

func (o options) validate() error {
	var problems []error
	if o.store != "postgres" && o.store != "redis" {
		problems = append(problems, fmt.Errorf("-store is %q: choose postgres or redis", o.store))
	}
	switch {
	case o.workers < 1:
		problems = append(problems, fmt.Errorf("-workers is %d: it must be at least 1", o.workers))
	case o.sessions < o.workers:
		problems = append(problems, fmt.Errorf("-sessions (%d) is less than -workers (%d): every worker needs sessions of its own", o.sessions, o.workers))
	}
	if o.duration < 10*time.Millisecond {
		problems = append(problems, fmt.Errorf("-duration is %v: it must be at least 10ms", o.duration))
	}
	if o.hotSessions < 1 {
		problems = append(problems, fmt.Errorf("-hot-sessions is %d: it must be at least 1", o.hotSessions))
	}
	if o.idleTimeout <= 0 {
		problems = append(problems, fmt.Errorf("-idle-timeout is %v: it must be positive", o.idleTimeout))
	}
	return errors.Join(problems...)
}

func selectWorkloads(names string) ([]workload, error) {
	if names == "" {
		return workloads, nil
	}
	var selected []workload
	for name := range strings.SplitSeq(names, ",") {
		i := indexWorkload(strings.TrimSpace(name))
		if i < 0 {
			return nil, fmt.Errorf("-workloads: unknown workload %q: choose from %s", name, workloadNames())
		}
		selected = append(selected, workloads[i])
	}
	return selected, nil
}

func indexWorkload(name string) int {
	for i, w := range workloads {
		if w.name == name {
			return i
		}
	}
	return -1
}

func workloadNames() string {
	names := make([]string, len(workloads))
	for i, w := range workloads {
		names[i] = w.name
	}
	return strings.Join(names, ",")
}

func cmpOr(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// bench is one run's servers and the sessions made on them.
type bench struct {
	opts     options
	progress io.Writer
	schema   string
	// admin runs the bench's own queries, outside the servers' counts.
	admin *pgxpool.Pool

	baseline, library, libraryIdle *server
	// competitor runs another session library on the same database (scs
	// on Redis), with an idle timeout for the workloads that want one;
	// nil when there is none.
	competitor, competitorIdle *server
	// cookies holds sessions made on each server, created on first need.
	cookies map[*server][]string
	// store is the library servers' PostgreSQL store.
	store session.Store
}

// run sets up the schema, the pools and the servers, runs every selected
// workload and tears it all down. progress receives a line per step.
func run(ctx context.Context, opts options, progress io.Writer) (*report, error) {
	if opts.store == "redis" {
		return runRedis(ctx, opts, progress)
	}
	rep := &report{
		Store:       "postgres",
		Date:        time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Workers:     opts.workers,
		Duration:    opts.duration.String(),
		Sessions:    opts.sessions,
		HotSessions: opts.hotSessions,
		Seed:        opts.seed,
	}
	admin, err := pgxpool.New(ctx, opts.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("-database-url: %w", err)
	}
	defer admin.Close()
	rep.Machine, err = describeMachine(ctx, admin)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL (-database-url, TEST_DATABASE_URL or DATABASE_URL): %w", err)
	}

	b := &bench{opts: opts, progress: progress, schema: "sessionbench_" + randomHex(4), admin: admin, cookies: map[*server][]string{}}
	quoted := pgx.Identifier{b.schema}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+quoted); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", b.schema, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+quoted+" CASCADE"); err != nil {
			fmt.Fprintf(progress, "sessionbench: drop schema %s: %v\n", b.schema, err)
		}
	}()
	stopServers, err := b.startServers(ctx)
	if err != nil {
		return nil, err
	}
	defer stopServers()

	for _, wl := range opts.workloads {
		results, err := b.runWorkload(ctx, wl)
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w", wl.name, err)
		}
		rep.Results = append(rep.Results, results...)
	}
	if opts.seed > 0 && slices.ContainsFunc(opts.workloads, func(w workload) bool { return w.name == "read" }) {
		// Batches bounded by Config.StoreTimeout's default, as the Manager's.
		if rep.Prune, err = b.pruneUnderLoad(ctx, b.store.(session.Pruner), opts.duration, 5*time.Second); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// startServers opens one pool per server, each of -workers connections with
// a statement counter, creates both tables, and starts the baseline server
// and two library servers, without and with an idle timeout. The library
// servers share one store: only one server is loaded at a time.
func (b *bench) startServers(ctx context.Context) (stop func(), err error) {
	var cleanup []func()
	stop = func() {
		for _, f := range slices.Backward(cleanup) {
			f()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	openPool := func(name string) (*pgxpool.Pool, *statementCounter, error) {
		cfg, err := pgxpool.ParseConfig(b.opts.databaseURL)
		if err != nil {
			return nil, nil, fmt.Errorf("-database-url: %w", err)
		}
		counter := &statementCounter{}
		cfg.MaxConns = int32(b.opts.workers)
		cfg.ConnConfig.Tracer = counter
		cfg.ConnConfig.RuntimeParams["application_name"] = b.schema + "_" + name
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		cleanup = append(cleanup, pool.Close)
		return pool, counter, nil
	}

	libPool, libCounter, err := openPool("library")
	if err != nil {
		return nil, err
	}
	table := b.schema + ".session"
	store, err := session.NewPostgresStore(ctx, libPool, session.PostgresOptions{Table: table})
	if err != nil {
		return nil, err
	}
	basePool, baseCounter, err := openPool("baseline")
	if err != nil {
		return nil, err
	}
	baseTable := pgx.Identifier{b.schema, "baseline"}.Sanitize()
	if _, err := basePool.Exec(ctx, "CREATE TABLE "+baseTable+" (LIKE "+pgx.Identifier{b.schema, "session"}.Sanitize()+" INCLUDING ALL)"); err != nil {
		return nil, fmt.Errorf("create the baseline table: %w", err)
	}
	b.store = store
	var managed session.Store = store
	if n := b.opts.seed; n > 0 {
		fmt.Fprintf(b.progress, "%-10s %d live and %d expired sessions into each table\n", "seed", n, n)
		for _, t := range []string{pgx.Identifier{b.schema, "session"}.Sanitize(), baseTable} {
			if err := seedTable(ctx, b.admin, t, n, n); err != nil {
				return nil, err
			}
		}
		managed = noPruner{store} // the expired rows stay until pruneUnderLoad
	}

	newManager := func(idle time.Duration) (*session.Manager, error) {
		m, err := session.New(ctx, session.Config{Secret: randomHex(32), IdleTimeout: idle}, session.WithStore(managed))
		if err != nil {
			return nil, err
		}
		cleanup = append(cleanup, m.Close)
		return m, nil
	}
	start := func(name string, h http.Handler, counter *statementCounter, pool *pgxpool.Pool) (*server, error) {
		s, err := startServer(name, h, counter)
		if err != nil {
			return nil, err
		}
		appName := pool.Config().ConnConfig.RuntimeParams["application_name"]
		s.backends = func(ctx context.Context) []int { return backendPIDs(ctx, b.admin, appName) }
		cleanup = append(cleanup, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.close(ctx)
		})
		return s, nil
	}

	plain, err := newManager(0)
	if err != nil {
		return nil, err
	}
	idle, err := newManager(b.opts.idleTimeout)
	if err != nil {
		return nil, err
	}
	if b.baseline, err = start("baseline", newBaseline(basePool, baseTable).handler(), baseCounter, basePool); err != nil {
		return nil, err
	}
	if b.library, err = start("library", plain.Handler(libraryApp()), libCounter, libPool); err != nil {
		return nil, err
	}
	if b.libraryIdle, err = start("library", idle.Handler(libraryApp()), libCounter, libPool); err != nil {
		return nil, err
	}
	return stop, nil
}

// sessionsOn returns -sessions cookies for srv, made on first use.
func (b *bench) sessionsOn(ctx context.Context, srv *server) ([]string, error) {
	if c, ok := b.cookies[srv]; ok {
		return c, nil
	}
	c, err := createSessions(ctx, srv, b.opts.sessions, b.opts.workers)
	if err != nil {
		return nil, err
	}
	b.cookies[srv] = c
	return c, nil
}

// runWorkload measures one workload on the baseline and the library, in the
// order baseline, library, library, baseline, repeated, after an
// unmeasured warm-up of each.
func (b *bench) runWorkload(ctx context.Context, wl workload) ([]result, error) {
	lib, other := b.library, b.competitor
	if wl.idle {
		lib, other = b.libraryIdle, b.competitorIdle
	}
	servers := []*server{b.baseline, lib}
	if other != nil {
		servers = append(servers, other)
	}
	workers := map[*server][]*worker{}
	for _, srv := range servers {
		cookies, err := b.sessionsOn(ctx, srv)
		if err != nil {
			return nil, err
		}
		var hot []string
		if wl.hot {
			if hot, err = createSessions(ctx, srv, b.opts.hotSessions, b.opts.hotSessions); err != nil {
				return nil, err
			}
		}
		workers[srv] = newWorkers(b.opts.workers, cookies, hot, uint64(indexWorkload(wl.name)))
		defer func() {
			for _, w := range workers[srv] {
				w.closeIdle()
			}
		}()
	}
	fmt.Fprintf(b.progress, "%-10s warming up\n", wl.name)
	warmUp := min(b.opts.duration/5, time.Second)
	for _, srv := range servers {
		phase(ctx, srv, workers[srv], wl.name, warmUp, false)
	}

	// Rounds of baseline, library, library, baseline (with a competitor:
	// baseline, library, competitor, competitor, library, baseline), each
	// slice at most a second, so that load from outside the run falls on
	// every server alike.
	rounds := max(1, int(b.opts.duration/(2*time.Second)))
	slice := b.opts.duration / time.Duration(2*rounds)
	back := slices.Clone(servers)
	slices.Reverse(back)
	order := append(slices.Clone(servers), back...)
	measured := map[*server]*measurement{}
	for _, srv := range servers {
		measured[srv] = &measurement{}
	}
	if b.opts.cpuProfile != "" {
		stop, err := startProfile(b.opts.cpuProfile, wl.name)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	fmt.Fprintf(b.progress, "%-10s %d rounds of %s, %v each\n", wl.name, rounds, serverNames(order), slice)
	for range rounds {
		for _, srv := range order {
			if err := measured[srv].run(ctx, srv, workers[srv], wl.name, slice); err != nil {
				return nil, err
			}
		}
	}

	var results []result
	for _, srv := range servers {
		r := measured[srv].result(wl, srv, workers[srv])
		if wl.hot {
			lost, err := lostWrites(ctx, srv, workers[srv])
			if err != nil {
				return nil, err
			}
			r.LostWrites = &lost
			r.Lossy = wl.lossy
		}
		results = append(results, r)
	}
	base := &results[0]
	for i := range results[1:] {
		if r := &results[1+i]; base.RequestsPerSecond > 0 {
			r.Ratio = r.RequestsPerSecond / base.RequestsPerSecond
		}
	}
	results[1].Target = wl.target
	return results, nil
}

func serverNames(servers []*server) string {
	names := make([]string, len(servers))
	for i, s := range servers {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// startProfile profiles the whole process; each server's goroutines carry
// the label server=baseline or server=library, for pprof -tagfocus.
func startProfile(path, workload string) (stop func(), err error) {
	ext := filepath.Ext(path)
	path = strings.TrimSuffix(path, ext) + "." + workload + ext
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
