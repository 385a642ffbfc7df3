package redischeck

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// byName returns results by check.
func byName(results []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range results {
		m[r.Check] = r
	}
	return m
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("durable server", func(t *testing.T) {
		t.Parallel()
		s := redistest.NewServer(t, true)
		got := byName(Check(ctx, redistest.Client(t, s.URL()), s.Addr()))
		for name, want := range map[string]Status{"redis reachable": Pass, "redis version": Pass, "redis cluster": Pass, "redis eviction": Pass, "redis persistence": Pass} {
			if got[name].Status != want {
				t.Errorf("%s: %+v; want %s", name, got[name], want)
			}
		}
		if d := got["redis persistence"].Detail; !strings.Contains(d, "appendfsync always") {
			t.Errorf("persistence: %q; want it to name appendfsync always", d)
		}
	})
	t.Run("nothing on disk, evicting", func(t *testing.T) {
		t.Parallel()
		s := redistest.NewServer(t, false)
		client := redistest.Client(t, s.URL())
		if err := client.ConfigSet(ctx, "maxmemory-policy", "volatile-lru").Err(); err != nil {
			t.Fatal(err)
		}
		got := byName(Check(ctx, client, s.Addr()))
		if r := got["redis persistence"]; r.Status != Warn || !strings.Contains(r.Detail, "keeps nothing on disk") || !strings.Contains(r.Detail, "signs everyone out") {
			t.Errorf("persistence: %+v; want a warning that a restart signs everyone out", r)
		}
		if r := got["redis eviction"]; r.Status != Warn || !strings.Contains(r.Detail, "volatile-lru") || !strings.Contains(r.Fix, "noeviction") {
			t.Errorf("eviction: %+v; want a warning naming volatile-lru and the fix noeviction", r)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		c := redistest.SharedCluster(t)
		got := byName(Check(ctx, redistest.Client(t, c.URL()), "cluster"))
		if r := got["redis cluster"]; r.Status != Pass || !strings.Contains(r.Detail, "3 masters") {
			t.Errorf("cluster: %+v; want 3 masters, ok", r)
		}
		single := byName(Check(ctx, redistest.Client(t, c.Nodes[0].URL()), c.Nodes[0].Addr()))
		if r := single["redis cluster"]; r.Status != Fail || !strings.Contains(r.Fix, "REDIS_CLUSTER=true") {
			t.Errorf("a cluster node named as a single server: %+v; want a failure naming REDIS_CLUSTER", r)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		s := redistest.NewServer(t, false)
		client := redistest.Client(t, s.URL())
		s.Kill(t)
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		got := Check(ctx, client, s.Addr())
		if got[0].Status != Fail || !strings.Contains(got[0].Detail, s.Addr()) {
			t.Errorf("reachable: %+v; want a failure naming %s", got[0], s.Addr())
		}
		for _, r := range got[1:] {
			if r.Status != Skip {
				t.Errorf("%s: %s; want skip after the server did not answer", r.Check, r.Status)
			}
		}
	})
}

// TestCount counts live and expired sessions a real store wrote, on a
// server and a cluster.
func TestCount(t *testing.T) {
	t.Parallel()
	for name, url := range map[string]func(t *testing.T) string{
		"standalone": func(t *testing.T) string { return redistest.URL(t) },
		"cluster":    func(t *testing.T) string { return redistest.SharedCluster(t).URL() },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client := redistest.Client(t, url(t))
			prefix := redistest.Prefix(t, client)
			store, err := session.NewRedisStore(client, session.RedisOptions{Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			for i, rec := range []session.Record{
				{UserID: "ada", Created: now, Expiry: now.Add(time.Hour)},
				{Created: now, Expiry: now.Add(time.Hour)},
				{Created: now, Expiry: now.Add(2 * time.Hour)},
				{UserID: "grace", Created: now.Add(-2 * time.Hour), Expiry: now.Add(-time.Hour)},
			} {
				if err := store.Insert(t.Context(), fmt.Sprintf("%064d", i), &rec); err != nil {
					t.Fatal(err)
				}
			}
			st, err := Count(t.Context(), client, prefix)
			if err != nil {
				t.Fatal(err)
			}
			if st.Live != 3 || st.Expired != 1 {
				t.Errorf("Count = %+v; want 3 live, 1 expired", st)
			}
		})
	}
}
