package session_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/pgtest"
	"github.com/smartscheduler/session/internal/rediskeys"
	"github.com/smartscheduler/session/internal/redistest"
)

// startRedisApp serves handler behind a Manager that New opens on
// redisURL, as an app configured with USE_REDIS and REDIS_URL would.
func startRedisApp(t *testing.T, redisURL string, cfg session.Config, handler http.Handler) (*session.Manager, string) {
	t.Helper()
	cfg.UseRedis, cfg.RedisURL = true, redisURL
	if cfg.Secret == "" {
		cfg.Secret = randomSecret(t)
	}
	m, err := session.New(t.Context(), cfg, session.WithLogger(discardLogger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv := httptest.NewServer(m.Handler(handler))
	t.Cleanup(srv.Close)
	return m, srv.URL
}

// TestRedisRestartWhileRequestsFlow is TestPostgresRestartWhileRequestsFlow
// on a durable Redis (appendonly yes, appendfsync always): connections cut
// by a proxy, and the server killed with SIGKILL and started again, under
// a steady load of writers. Requests get 503 during the outage, service
// resumes with no help, every write acknowledged with a 200 is there at the
// end, and a session destroyed before the outage stays destroyed.
func TestRedisRestartWhileRequestsFlow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T) (redisURL string, down, up func())
	}{
		{"connections cut", func(t *testing.T) (string, func(), func()) {
			server := redistest.NewServer(t, true)
			proxy := pgtest.NewTCPProxy(t, server.Addr())
			return "redis://" + proxy.Addr(), proxy.Cut, proxy.Restore
		}},
		{"server killed and restarted", func(t *testing.T) (string, func(), func()) {
			server := redistest.NewServer(t, true)
			return server.URL(), func() { server.Kill(t) }, func() { server.Restart(t) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			redisURL, down, up := tt.setup(t)
			const storeTimeout = time.Second
			_, url := startRedisApp(t, redisURL, session.Config{StoreTimeout: storeTimeout}, appHandler())

			gone := browser(t)
			fetchOK(t, gone, url+"/login?user=ada")
			fetchOK(t, gone, url+"/set?cart=book")
			old := jarCookie(t, gone, url, "session")
			fetchOK(t, gone, url+"/destroy")

			runWritersThroughOutage(t, url, down, up, 3*storeTimeout+time.Second)

			c := browser(t)
			c.Jar.SetCookies(mustURL(t, url), []*http.Cookie{{Name: "session", Value: old, Path: "/"}})
			for _, path := range []string{"/whoami", "/get?key=cart"} {
				if _, body := fetchOK(t, c, url+path); body != "" {
					t.Errorf("the session destroyed before the outage came back: %s = %q", path, body)
				}
			}
		})
	}
}

// TestRedisClusterMasterKilled kills one master of a cluster (without
// replicas, with cluster-require-full-coverage no) while sessions live on
// every master: requests for the sessions in its slots get 503 with
// Retry-After until it restarts, the others are served throughout, and
// afterwards every session is served again, nothing acknowledged lost.
func TestRedisClusterMasterKilled(t *testing.T) {
	t.Parallel()
	cluster := redistest.NewCluster(t, true)
	_, url := startRedisApp(t, cluster.URL(), session.Config{StoreTimeout: time.Second}, appHandler())
	keys, err := rediskeys.New("")
	if err != nil {
		t.Fatal(err)
	}

	// Sessions until each master holds some.
	type user struct {
		client *http.Client
		node   int
	}
	var users []user
	perNode := map[int]int{}
	for i := 0; i < 200 && (len(perNode) < len(cluster.Nodes) || min(perNode[0], perNode[1], perNode[2]) < 2); i++ {
		c := browser(t)
		fetchOK(t, c, url+"/visit")
		_, key := fetchOK(t, c, url+"/key")
		node := cluster.NodeOf(t, keys.Record(key))
		perNode[node]++
		users = append(users, user{c, node})
	}
	if len(perNode) < len(cluster.Nodes) {
		t.Fatalf("sessions landed on %d of %d masters", len(perNode), len(cluster.Nodes))
	}

	const dead = 0
	cluster.Kill(t, dead)
	visits := map[*http.Client]int{}
	for _, u := range users {
		visits[u.client] = 1
	}
	for round := range 2 {
		for _, u := range users {
			resp, body := fetch(t, u.client, url+"/visit")
			switch {
			case u.node == dead && resp.StatusCode != http.StatusServiceUnavailable:
				t.Errorf("round %d: a session on the dead master: %d %q; want 503", round, resp.StatusCode, body)
			case u.node == dead && resp.Header.Get("Retry-After") == "":
				t.Errorf("round %d: a 503 without Retry-After", round)
			case u.node != dead && resp.StatusCode != http.StatusOK:
				t.Errorf("round %d: a session on a live master: %d %q; want 200", round, resp.StatusCode, body)
			case u.node != dead:
				visits[u.client]++
				if want := strconv.Itoa(visits[u.client]); body != want {
					t.Errorf("round %d: a session on a live master counts %s visits; want %s", round, body, want)
				}
			}
		}
	}

	cluster.Restart(t, dead)
	for _, u := range users {
		var body string
		waitFor(t, "a session on the restarted master to be served", 15*time.Second, func() bool {
			var resp *http.Response
			resp, body = fetch(t, u.client, url+"/read")
			return resp.StatusCode == http.StatusOK
		})
		if want := strconv.Itoa(visits[u.client]); body != want {
			t.Errorf("after the restart a session (on master %d) reads %s visits; want %s", u.node, body, want)
		}
	}
}
