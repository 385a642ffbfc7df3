package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smartscheduler/session"
	"github.com/smartscheduler/session/internal/redischeck"
	"github.com/smartscheduler/session/internal/redisurl"
)

// The Redis side of sessionctl, for an app configured with USE_REDIS=true:
// check's store section, and stats, revoke and prune on the Redis store.

// checkRedis reports USE_REDIS, REDIS_URL and the server (see
// redischeck.Check) in place of the PostgreSQL checks.
func (c *checker) checkRedis(ctx context.Context, timeout time.Duration) {
	if problems := append(c.take("USE_REDIS"), c.take("USE_POSTGRES")...); len(problems) > 0 {
		c.addProblems("USE_REDIS", problems)
	} else {
		c.add("USE_REDIS", pass, "true: sessions live in Redis, shared by every instance"+c.env.origin("USE_REDIS"), "")
	}
	needs := func(why string) {
		for _, name := range []string{"redis reachable", "redis version", "redis cluster", "redis eviction", "redis persistence"} {
			c.add(name, skip, why, "")
		}
	}
	if problems := c.take("REDIS_URL"); len(problems) > 0 {
		c.addProblems("REDIS_URL", problems)
		needs("needs a usable REDIS_URL")
		return
	}
	target, err := redisurl.Parse(c.cfg.RedisURL, c.cfg.RedisCluster)
	if err != nil {
		c.add("REDIS_URL", fail, redisurl.Redact(err.Error(), c.cfg.RedisURL), "")
		needs("needs a usable REDIS_URL")
		return
	}
	c.add("REDIS_URL", pass, target.Where+c.env.origin("REDIS_URL"), "")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := target.NewClient()
	defer client.Close()
	for _, r := range redischeck.Check(ctx, client, target.Where) {
		c.add(r.Check, status(r.Status), redisurl.Redact(r.Detail, c.cfg.RedisURL), r.Fix)
	}
}

// redisConfig returns the configuration when it selects Redis, for the
// commands that then work on Redis instead of the session table.
func redisConfig(env func(string) (string, bool), flags databaseFlags) (session.Config, bool) {
	e, err := loadEnvironment(env, *flags.envFile)
	if err != nil {
		return session.Config{}, false // the PostgreSQL path reports it
	}
	cfg, _ := session.ConfigFromLookup(e.lookup)
	return cfg, cfg.UseRedis
}

// withRedis runs fn on the Redis store the configuration names, reporting
// a failure as name's.
func withRedis(ctx context.Context, name string, cfg session.Config, flags databaseFlags, stderr io.Writer,
	fn func(context.Context, adminStore, redis.UniversalClient, string) error) int {
	err := func() error {
		if cfg.RedisURL == "" {
			return errors.New("REDIS_URL is not set but USE_REDIS=true: set it to redis://user:password@host:6379/0")
		}
		target, err := redisurl.Parse(cfg.RedisURL, cfg.RedisCluster)
		if err != nil {
			return fmt.Errorf("REDIS_URL %w", err)
		}
		ctx, cancel := context.WithTimeout(ctx, *flags.timeout)
		defer cancel()
		client := target.NewClient()
		defer client.Close()
		if err := client.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("cannot connect to %s: %s: check REDIS_URL and that the server is up", target.Where, redisurl.Redact(err.Error(), cfg.RedisURL))
		}
		s, err := session.NewRedisStore(client, session.RedisOptions{})
		if err != nil {
			return err
		}
		store, err := administer(s)
		if err != nil {
			return err
		}
		return fn(ctx, store, client, target.Where)
	}()
	if err != nil {
		fmt.Fprintf(stderr, "sessionctl %s: %s\n", name, redisurl.Redact(err.Error(), cfg.RedisURL))
		return exitFailed
	}
	return exitOK
}

// redisStats is stats on Redis: live sessions and expired entries, counted
// from the store's deadline sets without a SCAN.
func redisStats(ctx context.Context, cfg session.Config, flags databaseFlags, asJSON bool, stdout, stderr io.Writer) int {
	return withRedis(ctx, "stats", cfg, flags, stderr, func(ctx context.Context, _ adminStore, client redis.UniversalClient, where string) error {
		st, err := redischeck.Count(ctx, client, "")
		if err != nil {
			return err
		}
		if asJSON {
			writeJSON(stdout, struct {
				Store     string    `json:"store"`
				Live      int64     `json:"live"`
				Expired   int64     `json:"expired"`
				RedisTime time.Time `json:"redis_time"`
			}{where, st.Live, st.Expired, st.Now})
			return nil
		}
		fmt.Fprintf(stdout, "store          %s\n", where)
		fmt.Fprintf(stdout, "live sessions  %d\n", st.Live)
		fmt.Fprintf(stdout, "expired        %d (Redis deleted them; the next prune drops their index entries)\n", st.Expired)
		return nil
	})
}

// redisRevoke is revoke on Redis.
func redisRevoke(ctx context.Context, cfg session.Config, flags databaseFlags, user string, stdout, stderr io.Writer) int {
	return withRedis(ctx, "revoke", cfg, flags, stderr, func(ctx context.Context, store adminStore, _ redis.UniversalClient, _ string) error {
		revoked, err := store.DestroyUser(ctx, user, "")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Revoked %d session(s) of user %q.\n", len(revoked), user)
		return nil
	})
}

// redisPrune is prune on Redis, batch by batch as on PostgreSQL: each
// batch is bounded by --timeout, never the whole run.
func redisPrune(ctx context.Context, cfg session.Config, flags databaseFlags, stdout, stderr io.Writer) int {
	return withRedis(ctx, "prune", cfg, flags, stderr, func(_ context.Context, store adminStore, _ redis.UniversalClient, where string) error {
		return prune(ctx, "expired session(s) from "+where, *flags.timeout, stdout, stderr, func(ctx context.Context, limit int) (int, error) {
			pruned, err := store.Prune(ctx, limit)
			return len(pruned), err
		})
	})
}
