// Package redischeck is what sessionctl knows about a Redis that keeps
// sessions: whether it answers and how fast, its version, the state of a
// cluster, whether it may evict sessions, whether it keeps them across a
// restart, and how many sessions it holds, counted from the store's
// deadline sets without a SCAN.
package redischeck

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smartscheduler/session/internal/rediskeys"
)

// Status is a check's outcome, as sessionctl prints it.
type Status string

// The outcomes of a check.
const (
	Pass Status = "pass"
	Warn Status = "warn" // works, but is a risk worth knowing
	Fail Status = "fail" // sessions would fail or be lost
	Skip Status = "skip" // could not be checked because an earlier check failed
)

// Result is one line of the checklist.
type Result struct {
	Check, Detail, Fix string
	Status             Status
}

// MaxLatency is the round trip above which the reachability check warns:
// every request that uses its session waits for at least one.
const MaxLatency = 20 * time.Millisecond

// node is what one server (each master of a cluster) said.
type node struct {
	addr                     string
	info                     map[string]string // INFO's fields
	save, appendfsync, cover string            // "" where CONFIG GET was refused
	clusterState             string
}

// Check inspects the Redis behind client; where names it in the results
// (never with a password). It changes nothing.
func Check(ctx context.Context, client redis.UniversalClient, where string) []Result {
	start := time.Now()
	err := client.Ping(ctx).Err()
	latency := time.Since(start)
	if err != nil {
		results := []Result{{Check: "redis reachable", Status: Fail, Detail: fmt.Sprintf("%s does not answer: %v", where, err),
			Fix: "check REDIS_URL, that the server is up, and that this host may connect (bind, protected-mode, firewall, password)"}}
		for _, name := range []string{"redis version", "redis cluster", "redis eviction", "redis persistence"} {
			results = append(results, Result{Check: name, Status: Skip, Detail: "needs the server"})
		}
		return results
	}
	// The connection is open now, so a second PING times one round trip.
	start = time.Now()
	if err := client.Ping(ctx).Err(); err == nil {
		latency = time.Since(start)
	}
	reach := Result{Check: "redis reachable", Status: Pass, Detail: fmt.Sprintf("%s answered in %s", where, latency.Round(10*time.Microsecond))}
	if latency > MaxLatency {
		reach.Status, reach.Fix = Warn, "every request that uses its session waits this long at least: put Redis near the app"
	}
	nodes, err := inspect(ctx, client)
	if err != nil {
		return []Result{reach, {Check: "redis version", Status: Fail, Detail: fmt.Sprintf("INFO failed: %v", err),
			Fix: "the REDIS_URL user needs INFO (ACL +info)"}}
	}
	return []Result{reach, version(nodes), cluster(client, nodes), eviction(nodes), persistence(nodes)}
}

// inspect reads INFO (and, where allowed, CONFIG GET) from every master.
func inspect(ctx context.Context, client redis.UniversalClient) ([]node, error) {
	var mu sync.Mutex
	var nodes []node
	read := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "server", "memory", "persistence", "cluster").Result()
		if err != nil {
			return err
		}
		n := node{addr: c.Options().Addr, info: parseInfo(info)}
		// Managed services often refuse CONFIG; what INFO says then stands.
		if cfg, err := c.ConfigGet(ctx, "*").Result(); err == nil {
			n.save, n.appendfsync, n.cover = cfg["save"], cfg["appendfsync"], cfg["cluster-require-full-coverage"]
			if n.save == "" {
				n.save = "none"
			}
		}
		if n.info["cluster_enabled"] == "1" {
			if ci, err := c.ClusterInfo(ctx).Result(); err == nil {
				n.clusterState = parseInfo(ci)["cluster_state"]
			}
		}
		mu.Lock()
		nodes = append(nodes, n)
		mu.Unlock()
		return nil
	}
	var err error
	switch c := client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, read)
	case *redis.Client:
		err = read(ctx, c)
	default:
		err = fmt.Errorf("unsupported client %T", client)
	}
	slices.SortFunc(nodes, func(a, b node) int { return strings.Compare(a.addr, b.addr) })
	return nodes, err
}

func parseInfo(info string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// version needs Redis 6.2 or later on every node; before 5.0 scripts
// that read the clock cannot write.
func version(nodes []node) Result {
	r := Result{Check: "redis version", Status: Pass}
	var versions []string
	for _, n := range nodes {
		v := n.info["redis_version"]
		versions = append(versions, v)
		major, minor := parseVersion(v)
		switch {
		case major < 5:
			r.Status, r.Fix = Fail, "upgrade to Redis 6.2 or later: before 5.0 the store's scripts cannot read the clock and write"
		case (major < 6 || major == 6 && minor < 2) && r.Status == Pass:
			r.Status, r.Fix = Warn, "upgrade to Redis 6.2 or later, the oldest the store is tested with"
		}
	}
	slices.Sort(versions)
	r.Detail = "Redis " + strings.Join(slices.Compact(versions), ", ")
	return r
}

func parseVersion(v string) (major, minor int) {
	parts := strings.SplitN(v, ".", 3)
	major, _ = strconv.Atoi(parts[0])
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	return major, minor
}

// cluster reports a cluster's state, and warns when a cluster stops every
// session because one master is down.
func cluster(client redis.UniversalClient, nodes []node) Result {
	if _, ok := client.(*redis.ClusterClient); !ok {
		if len(nodes) == 1 && nodes[0].info["cluster_enabled"] == "1" {
			return Result{Check: "redis cluster", Status: Fail, Detail: "the server is a cluster node but REDIS_URL names a single server",
				Fix: "set REDIS_CLUSTER=true (or add cluster=true or addr= parameters to REDIS_URL)"}
		}
		return Result{Check: "redis cluster", Status: Pass, Detail: "a single server (not a cluster)"}
	}
	r := Result{Check: "redis cluster", Status: Pass, Detail: fmt.Sprintf("%d masters, cluster_state ok on each", len(nodes))}
	for _, n := range nodes {
		if n.clusterState != "ok" {
			return Result{Check: "redis cluster", Status: Fail, Detail: fmt.Sprintf("master %s reports cluster_state %q", n.addr, n.clusterState),
				Fix: "a master is down or its slots are unassigned: sessions in those slots fail with 503 until it is back (redis-cli --cluster check)"}
		}
		if n.cover == "yes" {
			r.Status = Warn
			r.Detail += "; cluster-require-full-coverage yes: one master down stops every session, not only its own"
			r.Fix = "set cluster-require-full-coverage no on every node"
		}
	}
	return r
}

// eviction passes only noeviction: every key the store writes has a TTL,
// so the volatile-* policies evict sessions, user indexes and renewal
// markers as readily as the allkeys-* ones do.
func eviction(nodes []node) Result {
	for _, n := range nodes {
		policy := n.info["maxmemory_policy"]
		if policy == "noeviction" || policy == "" {
			continue
		}
		return Result{Check: "redis eviction", Status: Warn,
			Detail: fmt.Sprintf("%s evicts under memory pressure (maxmemory-policy %s): sessions end at random, and an evicted user index makes a revocation miss sessions; every key the store writes has a TTL, so volatile-* policies evict them as readily as allkeys-*", n.addr, policy),
			Fix:    "set maxmemory-policy noeviction: when memory runs out, writes then fail with 503 instead of signing users out, and service resumes as sessions expire"}
	}
	limit := "no maxmemory"
	if len(nodes) > 0 && nodes[0].info["maxmemory"] != "0" {
		limit = "maxmemory " + nodes[0].info["maxmemory_human"]
	}
	return Result{Check: "redis eviction", Status: Pass, Detail: "maxmemory-policy noeviction (" + limit + "): no session is evicted"}
}

// persistence says plainly what a restart loses.
func persistence(nodes []node) Result {
	for _, n := range nodes {
		aof := n.info["aof_enabled"] == "1"
		switch {
		case !aof && n.save == "none":
			return Result{Check: "redis persistence", Status: Warn,
				Detail: n.addr + " keeps nothing on disk (no AOF, no RDB snapshots): a restart or crash signs everyone out",
				Fix:    "set appendonly yes (appendfsync everysec loses at most a second of writes in a crash)"}
		case !aof && n.save == "":
			return Result{Check: "redis persistence", Status: Warn,
				Detail: n.addr + " has AOF off, and refused CONFIG GET, so its snapshot schedule is unknown: a restart may sign everyone out",
				Fix:    "check the provider's persistence settings, or set appendonly yes"}
		case !aof:
			return Result{Check: "redis persistence", Status: Warn,
				Detail: fmt.Sprintf("%s takes RDB snapshots only (save %q): a crash loses the sign-ins and writes since the last one", n.addr, n.save),
				Fix:    "set appendonly yes (appendfsync everysec loses at most a second of writes in a crash)"}
		case n.appendfsync == "no":
			return Result{Check: "redis persistence", Status: Warn,
				Detail: n.addr + " writes an AOF but leaves flushing it to the kernel (appendfsync no): a crash loses up to about 30 seconds of writes",
				Fix:    "set appendfsync everysec"}
		}
	}
	fsync := nodes[0].appendfsync
	if fsync == "" {
		fsync = "unknown (CONFIG GET refused)"
	}
	return Result{Check: "redis persistence", Status: Pass, Detail: "AOF on, appendfsync " + fsync + ": sessions survive a restart"}
}

// Stats counts the sessions under a key prefix (see rediskeys.Stats).
type Stats = rediskeys.Stats

// Count counts sessions from the store's 1024 deadline sets (two ZCOUNTs
// each, pipelined), never scanning the keyspace. prefix "" is the store's
// default.
func Count(ctx context.Context, client redis.UniversalClient, prefix string) (Stats, error) {
	keys, err := rediskeys.New(prefix)
	if err != nil {
		return Stats{}, err
	}
	return keys.Count(ctx, client)
}
