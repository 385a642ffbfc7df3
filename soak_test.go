package session_test

import (
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/pgtest"
)

// TestPostgresSoak runs a mixed load against PostgreSQL for
// SESSION_SOAK_DURATION (default 3s, so the plain test command stays quick;
// CI runs it for 30s; -short skips it): 16 clients, two per
// session on 8 sessions, reading their own key, setting it and incrementing
// a shared counter, while two more clients sign in, renew and sign out in a
// loop. At the end no request failed, every client reads its last
// acknowledged value, every counter equals its acknowledged increments, the
// pool has every connection back, and once everything is closed the
// goroutines and the heap are back where they started.
//
// Not parallel: it measures the whole process.
func TestPostgresSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test; -short skips it")
	}
	duration := 3 * time.Second
	if v := os.Getenv("SESSION_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SESSION_SOAK_DURATION=%q: %v", v, err)
		}
		duration = d
	}
	const sessions, clients, churners = 8, 16, 2
	table := pgtest.Schema(t) // starts the harness's own pool before the baseline

	goroutinesBefore, heapBefore := settle()

	poolCfg := pgtest.Config(t, pgtest.URL(t))
	poolCfg.MaxConns = 8
	pool := pgtest.NewPool(t, poolCfg)
	store, err := session.NewPostgresStore(t.Context(), pool, session.PostgresOptions{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	m, err := session.New(t.Context(), session.Config{Secret: randomSecret(t), StoreTimeout: 10 * time.Second},
		session.WithStore(store), session.WithLogger(discardLogger))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler(incrHandler()))
	ts := &testServer{Server: srv, manager: m}

	var (
		requests   atomic.Int64
		mu         sync.Mutex
		unexpected []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(unexpected) < 20 {
			unexpected = append(unexpected, fmt.Sprintf(format, args...))
		}
	}
	// get GETs path with c and returns the body of a 200, or fails.
	get := func(c *http.Client, path string) (string, bool) {
		requests.Add(1)
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			fail("GET %s: %v", path, err)
			return "", false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			fail("GET %s: status %d %q", path, resp.StatusCode, body)
			return "", false
		}
		return string(body), true
	}

	browsers := make([]*http.Client, clients+churners)
	for i := range browsers {
		browsers[i] = ts.client(t)
		browsers[i].Transport = &http.Transport{}
	}
	lastSet := make([]int, clients)              // per client: the last value acknowledged
	increments := make([]atomic.Int64, sessions) // per session: increments acknowledged
	for i := 0; i < clients; i += 2 {
		fetchOK(t, browsers[i], srv.URL+"/set?c"+strconv.Itoa(i)+"=0")
		u := srv.URL + "/"
		req, _ := http.NewRequest("GET", u, nil)
		browsers[i+1].Jar.SetCookies(req.URL, browsers[i].Jar.Cookies(req.URL))
		fetchOK(t, browsers[i+1], srv.URL+"/set?c"+strconv.Itoa(i+1)+"=0")
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		c, key, sess := browsers[i], "c"+strconv.Itoa(i), i/2
		rng := mrand.New(mrand.NewPCG(uint64(i), 1))
		wg.Go(func() {
			for seq := 1; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				switch op := rng.IntN(10); {
				case op < 4:
					if got, ok := get(c, "/get?key="+key); ok && got != strconv.Itoa(lastSet[i]) {
						fail("client %d read %s=%q, want its last write %d", i, key, got, lastSet[i])
					}
				case op < 7:
					if _, ok := get(c, fmt.Sprintf("/set?%s=%d", key, seq)); ok {
						lastSet[i] = seq
					}
				default:
					if _, ok := get(c, "/incr"); ok {
						increments[sess].Add(1)
					}
				}
			}
		})
	}
	var cycles atomic.Int64
	for i := range churners {
		c, user := browsers[clients+i], "churner"+strconv.Itoa(i)
		stale := &http.Client{Transport: c.Transport} // no jar: sends exactly the cookie it is given
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				get(c, "/set?x=1")
				before := jarCookie(t, c, srv.URL, "session")
				get(c, "/login?user="+user)
				if who, _ := get(c, "/whoami"); who != user {
					fail("%s: signed in as %q after renewal", user, who)
				}
				get(c, "/destroy")
				if before != "" {
					requests.Add(1)
					req, _ := http.NewRequest("GET", srv.URL+"/whoami", nil)
					req.AddCookie(&http.Cookie{Name: "session", Value: before})
					resp, err := stale.Do(req)
					if err != nil {
						fail("%s: replaying the pre-renewal cookie: %v", user, err)
						continue
					}
					who, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || len(who) != 0 {
						fail("%s: the pre-renewal cookie: status %d, signed in as %q", user, resp.StatusCode, who)
					}
				}
				cycles.Add(1)
			}
		})
	}
	time.Sleep(duration) // the load runs for this long; nothing is ordered by it
	close(stop)
	wg.Wait()

	for _, line := range unexpected {
		t.Error(line)
	}
	for i := range clients {
		if _, got := fetchOK(t, browsers[i], srv.URL+"/get?key=c"+strconv.Itoa(i)); got != strconv.Itoa(lastSet[i]) {
			t.Errorf("client %d: c%d=%q at the end, want its last acknowledged write %d", i, i, got, lastSet[i])
		}
	}
	total := int64(0)
	for s := range sessions {
		_, got := fetchOK(t, browsers[2*s], srv.URL+"/incr")
		want := increments[s].Load() + 1
		if got != strconv.FormatInt(want, 10) {
			t.Errorf("session %d: counter %s after %d acknowledged increments and this one", s, got, want)
		}
		total += want
	}
	noConnectionsHeld(t, pool)
	stat := pool.Stat()

	srv.Close()
	m.Close()
	pool.Close()
	for _, c := range browsers {
		c.CloseIdleConnections()
	}
	// Closed connections' goroutines exit on their own schedule; a leak is
	// one still there after ten seconds.
	var goroutinesAfter int
	var heapAfter uint64
	poll(10*time.Second, func() bool {
		goroutinesAfter, heapAfter = settle()
		return goroutinesAfter <= goroutinesBefore
	})
	t.Logf("%v: %d requests (%.0f/s), %d increments, %d sign-in/renew/sign-out cycles; pool: %d connections made, max %d; goroutines %d -> %d; heap %d KiB -> %d KiB",
		duration, requests.Load(), float64(requests.Load())/duration.Seconds(), total, cycles.Load(),
		stat.NewConnsCount(), stat.MaxConns(), goroutinesBefore, goroutinesAfter, heapBefore>>10, heapAfter>>10)
	if goroutinesAfter > goroutinesBefore {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after closing everything, %d before:\n%s", goroutinesAfter, goroutinesBefore, buf[:runtime.Stack(buf, true)])
	}
	if heapAfter > heapBefore+16<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB", heapBefore>>10, heapAfter>>10)
	}
}

// settle collects garbage and returns the number of goroutines and the
// bytes of live heap.
func settle() (int, uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapAlloc
}
