package session_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/redistest"
	"github.com/smartscheduler/session/storetest"
)

// redisSetup is one way of running Redis the tests cover: the shared
// standalone server, and the shared three-master cluster.
type redisSetup struct {
	name string
	url  func(t *testing.T) string
}

var redisSetups = []redisSetup{
	{"standalone", func(t *testing.T) string { return redistest.URL(t) }},
	{"cluster", func(t *testing.T) string { return redistest.SharedCluster(t).URL() }},
}

// newRedisStore returns a store under a key prefix of t's own, on a client
// of its own, with the client so that the test can look at the keys.
func newRedisStore(t *testing.T, redisURL string) (*session.RedisStore, redis.UniversalClient, string) {
	t.Helper()
	client := redistest.Client(t, redisURL)
	prefix := redistest.Prefix(t, client)
	s, err := session.NewRedisStore(client, session.RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s.(*session.RedisStore), client, prefix
}

func TestRedisStoreConformance(t *testing.T) {
	t.Parallel()
	for _, setup := range redisSetups {
		t.Run(setup.name, func(t *testing.T) {
			t.Parallel()
			redisURL := setup.url(t)
			storetest.Run(t, func(t *testing.T) session.Store {
				s, _, _ := newRedisStore(t, redisURL)
				return s
			})
		})
	}
}
