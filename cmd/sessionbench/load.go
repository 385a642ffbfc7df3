package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// workload is one kind of traffic, sent identically to both servers.
type workload struct {
	name string
	// target is the least library/baseline throughput ratio the library
	// should reach, or 0 for none.
	target float64
	// idle runs the library with an idle timeout, so reads may slide it.
	idle bool
	// hot sends every request to a few sessions and checks afterwards that
	// no acknowledged write was lost.
	hot bool
	// lossy marks a workload written the way that loses writes under
	// concurrency (get-put): its lost writes are measured and reported, not
	// a failure of the run.
	lossy bool
}

var workloads = []workload{
	{name: "untouched"},
	{name: "read", target: 0.90},
	{name: "read-idle", target: 0.85, idle: true},
	{name: "write", target: 0.80},
	{name: "new", target: 0.90},
	{name: "mixed"},
	{name: "hot", hot: true},
	// A counter on -hot-sessions sessions that every worker increments:
	// with Update[T] (counter), exact, against the floor's one UPDATE ...
	// SET n = n + 1; and (get-put) the way a handler without it would
	// write one, Value then Set, which loses increments.
	{name: "counter", target: 0.75, hot: true},
	{name: "get-put", hot: true, lossy: true},
}

// worker is one closed-loop client: it sends a request, waits for the whole
// answer, and sends the next. Each has its own connection.
type worker struct {
	id     int
	client *http.Client
	rng    *rand.Rand
	// sessions are the cookies this worker uses: a share of the sessions no
	// other worker touches, so that only the hot workload has requests
	// racing on one session.
	sessions []string

	latencies []time.Duration
	errors    int
	lastError string

	// The hot workload: this worker sets its own key to seq on its hot
	// session, and every fourth request adds one to a shared counter.
	hotSession     string
	seq            int64
	sent, acked    int64
	counterSent    int64
	counterAcked   int64
	hotKey         string
	recordLatency  bool
	requestCounter int
}

func newWorkers(n int, cookies, hot []string, seed uint64) []*worker {
	workers := make([]*worker, n)
	for i := range workers {
		w := &worker{
			id: i,
			client: &http.Client{Transport: &http.Transport{
				MaxIdleConnsPerHost: n,
				DisableCompression:  true,
			}},
			rng:    rand.New(rand.NewPCG(seed, uint64(i))),
			hotKey: "w" + strconv.Itoa(i),
		}
		for j := i; j < len(cookies); j += n {
			w.sessions = append(w.sessions, cookies[j])
		}
		if len(hot) > 0 {
			w.hotSession = hot[i%len(hot)]
		}
		workers[i] = w
	}
	return workers
}

func (w *worker) closeIdle() {
	w.client.CloseIdleConnections()
}

// request is what a worker sends next, and what to note when it succeeds.
type request struct {
	method, path, cookie string
	ok                   func()
}

func (w *worker) next(name string) request {
	session := func() string { return w.sessions[w.rng.IntN(len(w.sessions))] }
	switch name {
	case "untouched":
		return request{method: "GET", path: "/untouched", cookie: session()}
	case "read", "read-idle":
		return request{method: "GET", path: "/read", cookie: session()}
	case "write":
		w.seq++
		return request{method: "POST", path: "/write?n=" + strconv.FormatInt(w.seq, 10), cookie: session()}
	case "new":
		return request{method: "POST", path: "/new"}
	case "mixed":
		if w.rng.IntN(10) == 0 {
			return w.next("write")
		}
		return w.next("read")
	case "counter", "get-put":
		w.counterSent++
		return request{method: "POST", path: "/" + name, cookie: w.hotSession, ok: func() { w.counterAcked++ }}
	case "hot":
		w.requestCounter++
		if w.requestCounter%4 == 0 {
			w.counterSent++
			return request{method: "POST", path: "/counter", cookie: w.hotSession, ok: func() { w.counterAcked++ }}
		}
		w.seq++
		n := w.seq
		w.sent = n
		return request{method: "POST", path: "/hot?key=" + w.hotKey + "&n=" + strconv.FormatInt(n, 10), cookie: w.hotSession,
			ok: func() { w.acked = n }}
	}
	panic("unknown workload " + name)
}

// loop sends requests of the named workload to baseURL until the deadline.
func (w *worker) loop(ctx context.Context, baseURL, name string, until time.Time) {
	for ctx.Err() == nil && time.Now().Before(until) {
		req := w.next(name)
		start := time.Now()
		err := w.do(ctx, baseURL, req)
		if w.recordLatency {
			w.latencies = append(w.latencies, time.Since(start))
			if err != nil {
				w.errors++
				w.lastError = err.Error()
			}
		}
		if err == nil && req.ok != nil {
			req.ok()
		}
	}
}

func (w *worker) do(ctx context.Context, baseURL string, req request) error {
	r, err := http.NewRequestWithContext(ctx, req.method, baseURL+req.path, nil)
	if err != nil {
		return err
	}
	if req.cookie != "" {
		r.Header.Set("Cookie", req.cookie)
	}
	resp, err := w.client.Do(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %.200s", req.method, req.path, resp.Status, body)
	}
	return nil
}

// phase runs every worker against srv for d, and returns how long it took
// until the last answer arrived.
func phase(ctx context.Context, srv *server, workers []*worker, name string, d time.Duration, record bool) time.Duration {
	start := time.Now()
	until := start.Add(d)
	var wg sync.WaitGroup
	for _, w := range workers {
		w.recordLatency = record
		wg.Go(func() { w.loop(ctx, srv.url, name, until) })
	}
	wg.Wait()
	return time.Since(start)
}

// measurement accumulates one server's phases of one workload.
type measurement struct {
	elapsed    time.Duration
	statements statementCounts
	// cpu is this process's CPU time: the load generator and the server.
	cpu time.Duration
	// postgresCPU is the CPU time of the server's PostgreSQL backends, or
	// negative when their /proc entries cannot be read (a remote server).
	postgresCPU time.Duration
}

func (m *measurement) run(ctx context.Context, srv *server, workers []*worker, name string, d time.Duration) error {
	backends := srv.backends(ctx)
	statements, cpu, postgresCPU := srv.statements.snapshot(), processCPU(), backendsCPU(backends)
	m.elapsed += phase(ctx, srv, workers, name, d, true)
	m.statements = m.statements.add(srv.statements.snapshot().minus(statements))
	m.cpu += processCPU() - cpu
	if postgresCPU < 0 || m.postgresCPU < 0 {
		m.postgresCPU = -1
	} else {
		m.postgresCPU += backendsCPU(backends) - postgresCPU
	}
	return ctx.Err()
}

// backendsCPU sums the CPU time of the given PostgreSQL backends from
// /proc, or returns -1 if any cannot be read.
func backendsCPU(pids []int) time.Duration {
	if len(pids) == 0 {
		return -1
	}
	var total time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return -1
		}
		// Fields after the parenthesised command name; utime and stime are
		// the 14th and 15th of the whole line, in clock ticks (100 Hz).
		_, rest, _ := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest)
		if len(f) < 13 {
			return -1
		}
		utime, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return -1
		}
		total += time.Duration(utime+stime) * 10 * time.Millisecond
	}
	return total
}

// result summarises one server's run of one workload.
func (m *measurement) result(wl workload, srv *server, workers []*worker) result {
	var all []time.Duration
	r := result{Workload: wl.name, Server: srv.name}
	for _, w := range workers {
		all = append(all, w.latencies...)
		r.Errors += w.errors
		if w.lastError != "" {
			r.LastError = w.lastError
		}
	}
	slices.Sort(all)
	r.Requests = len(all)
	if r.Requests == 0 {
		return r
	}
	r.RequestsPerSecond = float64(r.Requests) / m.elapsed.Seconds()
	r.P50 = all[len(all)*50/100]
	r.P99 = all[len(all)*99/100]
	r.CPUPerRequest = m.cpu / time.Duration(r.Requests)
	if m.postgresCPU >= 0 {
		pg := m.postgresCPU / time.Duration(r.Requests)
		r.PostgresCPUPerRequest = &pg
	}
	r.StatementsPerRequest = float64(m.statements.total()) / float64(r.Requests)
	r.StatementKinds = map[string]float64{}
	for kind, n := range m.statements {
		if n > 0 {
			r.StatementKinds[kind] = float64(n) / float64(r.Requests)
		}
	}
	return r
}

// lostWrites reads back the hot sessions through srv and counts the
// acknowledged writes they do not hold: a worker's key below the last value
// it was told was saved, or a counter below the increments acknowledged. A
// value no request ever sent counts too.
func lostWrites(ctx context.Context, srv *server, workers []*worker) (int64, error) {
	bySession := map[string][]*worker{}
	for _, w := range workers {
		bySession[w.hotSession] = append(bySession[w.hotSession], w)
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	var lost int64
	for cookie, ws := range bySession {
		values, err := dump(ctx, client, srv.url, cookie)
		if err != nil {
			return 0, err
		}
		var counter, counterAcked, counterSent int64
		json.Unmarshal(values["counter"], &counter)
		for _, w := range ws {
			var got int64
			json.Unmarshal(values[w.hotKey], &got)
			if got < w.acked {
				lost += w.acked - got
			}
			if got > w.sent {
				lost++
			}
			counterAcked += w.counterAcked
			counterSent += w.counterSent
		}
		if counter < counterAcked {
			lost += counterAcked - counter
		}
		if counter > counterSent {
			lost += counter - counterSent
		}
	}
	return lost, nil
}

func dump(ctx context.Context, client *http.Client, baseURL, cookie string) (map[string]json.RawMessage, error) {
	r, err := http.NewRequestWithContext(ctx, "GET", baseURL+"/dump", nil)
	if err != nil {
		return nil, err
	}
	r.Header.Set("Cookie", cookie)
	resp, err := client.Do(r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading back a hot session: %s", resp.Status)
	}
	values := map[string]json.RawMessage{}
	if err := json.NewDecoder(resp.Body).Decode(&values); err != nil {
		return nil, fmt.Errorf("reading back a hot session: %w", err)
	}
	return values, nil
}

// createSessions starts n sessions on srv through POST /new, with the given
// parallelism, and returns their cookies as Cookie header values.
func createSessions(ctx context.Context, srv *server, n, parallel int) ([]string, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: parallel}}
	defer client.CloseIdleConnections()
	cookies := make([]string, n)
	errs := make([]error, parallel)
	var wg sync.WaitGroup
	for p := range parallel {
		wg.Go(func() {
			for i := p; i < n && errs[p] == nil; i += parallel {
				cookies[i], errs[p] = createSession(ctx, client, srv.url)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("creating sessions on the %s server: %w", srv.name, err)
		}
	}
	return cookies, nil
}

func createSession(ctx context.Context, client *http.Client, baseURL string) (string, error) {
	r, err := http.NewRequestWithContext(ctx, "POST", baseURL+"/new", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(r)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusOK || len(cookies) != 1 {
		return "", fmt.Errorf("POST /new: %s with %d cookies, want 200 OK with 1", resp.Status, len(cookies))
	}
	return cookies[0].Name + "=" + cookies[0].Value, nil
}
