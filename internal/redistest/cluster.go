package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters without replicas, each a
// Server the harness started.
type Cluster struct {
	Nodes []*Server
}

// URL returns the cluster's URL as REDIS_URL takes it: the first node,
// with the others as addr parameters.
func (c *Cluster) URL() string {
	var q []string
	for _, n := range c.Nodes[1:] {
		q = append(q, "addr="+n.Addr())
	}
	return c.Nodes[0].URL() + "?" + strings.Join(q, "&")
}

// startCluster starts three cluster-enabled servers, joins them with
// redis-cli --cluster create and waits until every node reports
// cluster_state:ok.
func startCluster(durable bool) (c *Cluster, err error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, errors.New("redis-cli is not on the PATH: install it (apt-get install redis-tools)")
	}
	c = &Cluster{}
	defer func() {
		if err != nil {
			for _, n := range c.Nodes {
				n.stop()
			}
		}
	}()
	for range 3 {
		bus, err := freePort()
		if err != nil {
			return nil, err
		}
		n, err := startServer(durable,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(bus),
			// A master that stops answering is marked failed after a
			// second, and the others keep serving their own slots.
			"--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no")
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.waitOK(); err != nil {
		return nil, err
	}
	return c, nil
}

// waitOK waits until every node answers and reports cluster_state:ok with
// all three masters known.
func (c *Cluster) waitOK() error {
	stop := time.Now().Add(deadline)
	for _, n := range c.Nodes {
		client := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := client.ClusterInfo(ctx).Result()
			cancel()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(stop) {
				client.Close()
				return fmt.Errorf("cluster node %s not ready within %v: %v %q", n.Addr(), deadline, err, info)
			}
			time.Sleep(20 * time.Millisecond) // polling the cluster, not ordering goroutines
		}
		client.Close()
	}
	return nil
}

// Kill kills node i (see Server.Kill).
func (c *Cluster) Kill(t testing.TB, i int) {
	t.Helper()
	c.Nodes[i].Kill(t)
}

// Restart starts node i again with its nodes.conf and data, and waits
// until the whole cluster reports cluster_state:ok.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	c.Nodes[i].Restart(t)
	if err := c.waitOK(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// NodeOf returns the index of the node serving key's slot.
func (c *Cluster) NodeOf(t testing.TB, key string) int {
	t.Helper()
	client, err := newClient(c.URL())
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	defer client.Close()
	master, err := client.(*redis.ClusterClient).MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatalf("redistest: the node of %s: %v", key, err)
	}
	for i, n := range c.Nodes {
		if n.Addr() == master.Options().Addr {
			return i
		}
	}
	t.Fatalf("redistest: %s is served by %s, no node of this cluster", key, master.Options().Addr)
	return -1
}
