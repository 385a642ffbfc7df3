package session_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/redistest"
)

// redisInstance is one application instance on Redis: a Manager on a
// client of its own, under a key prefix other instances may share.
type redisInstance struct {
	*testServer
	rdb      redis.UniversalClient
	prefix   string
	commands *commandCounter
}

// startRedisInstance starts an app instance on the Redis at redisURL under
// prefix ("" for a new one of the test's), counting the commands its
// client sends. It runs on the real clock, which Redis expires keys by.
func startRedisInstance(t *testing.T, redisURL, prefix string, cfg session.Config, handler http.Handler) *redisInstance {
	t.Helper()
	client := redistest.Client(t, redisURL)
	if prefix == "" {
		prefix = redistest.Prefix(t, client)
	}
	// A first command opens a connection, whose handshake (HELLO, CLIENT
	// SETINFO) the counter then does not see.
	if err := client.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	counter := &commandCounter{}
	client.AddHook(counter)
	store, err := session.NewRedisStore(client, session.RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Secret == "" {
		cfg.Secret = "shared-secret-of-every-instance-0123456789"
	}
	ts := startServer(t, serverSetup{cfg: cfg, store: newSpyStore(store), options: []session.Option{session.WithClock(time.Now)}}, handler)
	return &redisInstance{testServer: ts, rdb: client, prefix: prefix, commands: counter}
}

// twoRedisInstances starts two instances of handler on one prefix: two
// replicas of an application behind a load balancer.
func twoRedisInstances(t *testing.T, redisURL string, handler http.Handler) (a, b *redisInstance) {
	t.Helper()
	a = startRedisInstance(t, redisURL, "", session.Config{}, handler)
	return a, startRedisInstance(t, redisURL, a.prefix, session.Config{}, handler)
}

// records counts the sessions stored under the instance's prefix: hashes
// holding a session, not the markers a renewal leaves for a minute.
func (r *redisInstance) records(t *testing.T) int {
	t.Helper()
	ctx := context.Background()
	keys, err := redistest.Keys(ctx, r.rdb, r.prefix)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if !strings.Contains(k, "}s:") {
			continue
		}
		v, err := r.rdb.HMGet(ctx, k, "e", "m").Result()
		if err != nil {
			t.Fatal(err)
		}
		if v[0] != nil && v[1] == nil {
			n++
		}
	}
	return n
}

// commandCounter is a go-redis hook counting the commands a client sends,
// pipelined or not, except an EVALSHA refused with NOSCRIPT by a node that
// has not seen the script yet: go-redis then sends the script itself, which
// counts.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			c.n.Add(1)
		}
		return err
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if !redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
				c.n.Add(1)
			}
		}
		return err
	}
}

// mustURL parses rawURL, failing the test if it cannot.
func mustURL(t *testing.T, rawURL string) *url.URL {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
