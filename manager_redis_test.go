package session_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartscheduler/session"
)

// onEachRedis runs test on the shared standalone server and the shared
// cluster.
func onEachRedis(t *testing.T, test func(t *testing.T, redisURL string)) {
	for _, setup := range redisSetups {
		t.Run(setup.name, func(t *testing.T) {
			t.Parallel()
			test(t, setup.url(t))
		})
	}
}

func TestRedisTwoInstancesShareSessions(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, redisURL string) {
		a, b := twoRedisInstances(t, redisURL, appHandler())
		onA := a.client(t)
		fetchOK(t, onA, a.URL+"/login?user=ada")
		fetchOK(t, onA, a.URL+"/set?color=teal")
		onB := a.client(t)
		onB.Jar.SetCookies(mustURL(t, b.URL), []*http.Cookie{{Name: "session", Value: jarCookie(t, onA, a.URL, "session"), Path: "/"}})
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
		if n := a.records(t); n != 0 {
			t.Errorf("%d sessions stored after the logout; want 0", n)
		}
	})
}

func TestRedisRevokeUserOnEveryInstance(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, redisURL string) {
		a, b := twoRedisInstances(t, redisURL, appHandler())
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
		if infos, err := a.manager.UserSessions(t.Context(), "ada"); err != nil || len(infos) != 0 {
			t.Errorf("UserSessions(ada) after the revocation = %v, %v; want none", infos, err)
		}
	})
}

// TestRedisConcurrentKeysLoseNothing makes eight requests, on two
// instances, load the same version of one session before any saves, each
// then setting its own key: every key must land.
func TestRedisConcurrentKeysLoseNothing(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, redisURL string) {
		const n = 8
		var names []string
		for i := range n {
			names = append(names, "k"+strconv.Itoa(i))
		}
		g := newGate(names...)
		mux := http.NewServeMux()
		mux.Handle("/", appHandler())
		mux.Handle("/slow", g.handler())
		a, b := twoRedisInstances(t, redisURL, mux)
		c := a.client(t)
		fetchOK(t, c, a.URL+"/set?base=1")
		onB := b.client(t)
		onB.Jar.SetCookies(mustURL(t, b.URL), []*http.Cookie{{Name: "session", Value: jarCookie(t, c, a.URL, "session"), Path: "/"}})

		var wg sync.WaitGroup
		for i, name := range names {
			client, inst := c, a
			if i%2 == 1 {
				client, inst = onB, b
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
			<-g.loaded
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
	})
}

func TestRedisAtomicIncrementsAreExact(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, redisURL string) {
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
		a, b := twoRedisInstances(t, redisURL, mux)
		c := a.client(t)
		fetchOK(t, c, a.URL+"/set?x=1")
		onB := b.client(t)
		onB.Jar.SetCookies(mustURL(t, b.URL), []*http.Cookie{{Name: "session", Value: jarCookie(t, c, a.URL, "session"), Path: "/"}})
		const n = 16
		incrementOnTwo(t, c, a.URL, onB, b.URL, n, 1)
		if _, body := fetchOK(t, c, a.URL+"/count"); body != strconv.Itoa(n) {
			t.Fatalf("counter = %s after %d concurrent increments", body, n)
		}
	})
}

// TestRedisCommandsPerRequest pins the cost of each kind of request to the
// floor, as TestPostgresStatementsPerRequest does: nothing for an
// untouched session, one script for a read, a blind write, a logout or a
// new session, two for a read and a write.
func TestRedisCommandsPerRequest(t *testing.T) {
	t.Parallel()
	onEachRedis(t, func(t *testing.T, redisURL string) {
		a := startRedisInstance(t, redisURL, "", session.Config{}, appHandler())
		steps := []struct {
			path string
			want int64
		}{
			{"/visit", 1}, // a new session: one insert
			{"/noop", 0},
			{"/read", 1},
			{"/visit", 2},
			{"/set?color=red", 1}, // a write that reads nothing
			{"/get?key=color", 1},
			{"/destroy", 1}, // an anonymous session's logout
		}
		// The first pass also reads the server's clock, which the store
		// then estimates for 30 seconds; the next two count.
		for pass := range 3 {
			c := a.client(t)
			for _, step := range steps {
				before := a.commands.n.Load()
				fetchOK(t, c, a.URL+step.path)
				if got := a.commands.n.Load() - before; pass > 0 && got != step.want {
					t.Errorf("%s sent %d Redis commands; want %d", step.path, got, step.want)
				}
			}
		}
	})
}

// TestRedisNewFailsFastAndHidesThePassword starts the Manager against
// Redis servers that cannot answer, with passwords full of the characters
// URLs escape: New must fail within StoreTimeout with ErrUnavailable, name
// the host, port and database, and never show the password.
func TestRedisNewFailsFastAndHidesThePassword(t *testing.T) {
	t.Parallel()
	const storeTimeout = time.Second
	for _, password := range []string{"S3cret@PW", "S3c#ret%PW", "p%40ss"} {
		for _, tt := range []struct {
			name string
			addr string
		}{
			{"closed port", fmt.Sprintf("127.0.0.1:%d", closedPort(t))},
			{"accepts and never answers", blackhole(t)},
			{"accepts and hangs up", hangup(t)},
		} {
			t.Run(tt.name+" "+password, func(t *testing.T) {
				t.Parallel()
				var logs syncBuffer
				logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
				redisURL := "redis://app:" + escapePassword(password) + "@" + tt.addr + "/3"
				cfg := session.Config{UseRedis: true, RedisURL: redisURL, Secret: randomSecret(t), StoreTimeout: storeTimeout}
				start := time.Now()
				m, err := session.New(t.Context(), cfg, session.WithLogger(logger))
				elapsed := time.Since(start)
				if err == nil {
					m.Close()
					t.Fatal("New succeeded against a Redis that cannot answer")
				}
				if elapsed > storeTimeout+2*time.Second {
					t.Errorf("New took %v to fail; StoreTimeout is %v", elapsed, storeTimeout)
				}
				if !errors.Is(err, session.ErrUnavailable) {
					t.Errorf("New's error %v does not wrap ErrUnavailable", err)
				}
				host, port, _ := net.SplitHostPort(tt.addr)
				for _, want := range []string{host, port, "database 3"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("New's error does not name %s: %v", want, err)
					}
				}
				assertHidden(t, password, err, logs.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg))
			})
		}
	}
}

// escapePassword percent-encodes what a URL's userinfo cannot hold as is.
func escapePassword(pw string) string {
	return strings.NewReplacer("%", "%25", "@", "%40", "#", "%23", "/", "%2F").Replace(pw)
}

// assertHidden fails if the password, raw or escaped, shows in err's chain
// or in any of texts.
func assertHidden(t *testing.T, password string, err error, texts ...string) {
	t.Helper()
	forms := []string{password, escapePassword(password)}
	if err != nil {
		for _, e := range chain(err) {
			texts = append(texts, e.Error(), fmt.Sprintf("%+v", e))
		}
	}
	for _, text := range texts {
		for _, form := range forms {
			if strings.Contains(text, form) {
				t.Errorf("the password (%q) shows in: %s", form, text)
			}
		}
	}
}

func TestRedisConfig(t *testing.T) {
	t.Parallel()
	const secret = "Zk3vQ9pL2mX7rT1wY8bN4cF6hJ0dS5gA-more"
	env := func(kv ...string) map[string]string {
		m := map[string]string{"NODE_ENV": "production", "SESSION_SECRET": secret}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string // the variables the problems name; none for a valid one
	}{
		{"redis in production", env("USE_REDIS", "true", "REDIS_URL", "redis://:pw@cache:6379/2"), nil},
		{"a cluster", env("USE_REDIS", "true", "REDIS_URL", "redis://a:7000?addr=b:7000", "REDIS_CLUSTER", "true"), nil},
		{"both stores", env("USE_REDIS", "true", "REDIS_URL", "redis://cache:6379", "USE_POSTGRES", "true", "DATABASE_URL", "postgres://db/app"), []string{"USE_REDIS"}},
		{"no URL", env("USE_REDIS", "true"), []string{"REDIS_URL"}},
		{"a PostgreSQL URL", env("USE_REDIS", "true", "REDIS_URL", "postgres://db/app"), []string{"REDIS_URL"}},
		{"a database on a cluster", env("USE_REDIS", "true", "REDIS_URL", "redis://a:7000/2?cluster=true"), []string{"REDIS_URL"}},
		{"not a boolean", env("USE_REDIS", "yes please", "REDIS_URL", "redis://cache:6379"), []string{"USE_POSTGRES", "USE_REDIS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := session.ConfigFromLookup(lookupFrom(tt.env))
			if got := problemVariables(err); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("problems with %v; want %v: %v", got, tt.want, err)
			}
		})
	}

	// An unparsable URL with a raw password: the problem, the Config's
	// text and its log line never show it.
	const password = "p@ss#w%rd"
	cfg, err := session.ConfigFromLookup(lookupFrom(env("USE_REDIS", "true", "REDIS_URL", "redis://app:"+password+"@cache:6379/1")))
	if err == nil {
		t.Fatal("a REDIS_URL with a raw # and % parsed")
	}
	var logs syncBuffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", cfg)
	assertHidden(t, password, err, cfg.String(), fmt.Sprintf("%#v", cfg), logs.String())
	for _, fragment := range []string{"p@ss", "w%rd", "ss#w"} {
		if strings.Contains(err.Error(), fragment) {
			t.Errorf("the problem shows part of the password (%q): %v", fragment, err)
		}
	}

	cfg, err = session.ConfigFromLookup(lookupFrom(env("USE_REDIS", "true", "REDIS_URL", "redis://app:S3cretPW@cache:6380/4")))
	if err != nil {
		t.Fatal(err)
	}
	logs = syncBuffer{}
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", cfg)
	if !strings.Contains(logs.String(), "cache:6380 database 4") {
		t.Errorf("the log line does not name the Redis server and database:\n%s", logs.String())
	}
	assertHidden(t, "S3cretPW", nil, cfg.String(), logs.String())
}

// TestRedisClusterURLErrorNamesEveryHost: a cluster none of whose nodes
// answers fails New with ErrUnavailable, naming every node it was given.
func TestRedisClusterURLErrorNamesEveryHost(t *testing.T) {
	t.Parallel()
	ports := []int{closedPort(t), closedPort(t), closedPort(t)}
	redisURL := fmt.Sprintf("redis://:S3c%%40ret@127.0.0.1:%d?addr=127.0.0.1:%d&addr=127.0.0.1:%d", ports[0], ports[1], ports[2])
	_, err := session.New(t.Context(), session.Config{UseRedis: true, RedisURL: redisURL, Secret: randomSecret(t), StoreTimeout: time.Second},
		session.WithLogger(discardLogger))
	if !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("New = %v; want ErrUnavailable", err)
	}
	for _, port := range ports {
		if !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", port)) {
			t.Errorf("the error does not name the node on port %d: %v", port, err)
		}
	}
	if !strings.Contains(err.Error(), "cluster") {
		t.Errorf("the error does not say it is a cluster: %v", err)
	}
	assertHidden(t, "S3c@ret", err)
}
