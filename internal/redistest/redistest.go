// Package redistest gives tests real Redis servers: a shared standalone
// server, a shared three-master Redis Cluster, and servers and clusters of a
// test's own that it may kill and restart. Never a mock.
//
// The shared standalone server is TEST_REDIS_URL when set (CI points it at
// the machine's server, which keeps nothing on disk); otherwise one
// throwaway redis-server started for the whole test binary. The shared
// cluster is always started here: three "redis-server --cluster-enabled
// yes" on free loopback ports, joined with "redis-cli --cluster create",
// ready once every node reports cluster_state:ok. It runs with
// cluster-require-full-coverage no, as production should, so that a dead
// master takes only its own slots down. Tests share servers by taking a key
// prefix each (Prefix), whose keys are deleted when the test ends.
//
// Servers and clusters started by the harness live in temporary
// directories, each recording the test binary that owns it, so that a
// later run kills the servers of a binary that died before its cleanup.
//
// Like pgtest, a test that cannot get Redis (no redis-server on the PATH,
// none at TEST_REDIS_URL) skips, and Main then makes the package FAIL,
// because "go test ./..." prints only "ok" for a passing package and a
// skip would go unseen. SESSION_ALLOW_NO_REDIS=1 lets it pass. Every
// package that uses redistest runs its tests through Main, or through Wrap
// together with pgtest:
//
//	func TestMain(m *testing.M) { redistest.Main(m) }
//	func TestMain(m *testing.M) { pgtest.Main(redistest.Wrap(m)) }
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// deadline bounds the harness's own waits, so that a broken server fails a
// test instead of hanging it.
const deadline = 30 * time.Second

var (
	sharedOnce   sync.Once
	sharedURL    string
	sharedErr    error
	clusterOnce  sync.Once
	shared       *Cluster
	sharedCluErr error

	// running are the servers the harness started and has not stopped,
	// for Main to stop.
	running struct {
		sync.Mutex
		servers map[*Server]bool
	}
	// noRedis counts the tests skipped for want of Redis, for Main.
	noRedis struct {
		sync.Mutex
		skipped int
		reason  error
	}
)

// Runner is what Main and Wrap run: *testing.M, or a Runner that Wrap
// returned.
type Runner interface{ Run() int }

type wrapped struct{ m Runner }

// Run runs the tests, stops every server the harness started, and turns
// skips for want of Redis into a failure (see the package documentation).
func (w wrapped) Run() int {
	code := w.m.Run()
	running.Lock()
	servers := slices.Collect(maps.Keys(running.servers))
	running.Unlock()
	for _, s := range servers {
		s.stop()
	}
	noRedis.Lock()
	skipped, reason := noRedis.skipped, noRedis.reason
	noRedis.Unlock()
	if skipped == 0 {
		return code
	}
	tests := "tests"
	if skipped == 1 {
		tests = "test"
	}
	if os.Getenv("SESSION_ALLOW_NO_REDIS") == "1" {
		fmt.Fprintf(os.Stderr, "redistest: %d %s skipped for want of Redis (%v); passing anyway, as SESSION_ALLOW_NO_REDIS=1 asks\n", skipped, tests, reason)
		return code
	}
	fmt.Fprintf(os.Stderr, "redistest: FAIL: %d %s skipped for want of Redis: %v\n"+
		"redistest: a skip fails the package, since \"go test ./...\" would show a passing package as \"ok\" and nothing else.\n"+
		"redistest: to let it pass without Redis, set SESSION_ALLOW_NO_REDIS=1.\n", skipped, tests, reason)
	return max(code, 1)
}

// Wrap returns m with the harness's teardown after its tests, for a TestMain
// that also hands the tests to another harness's Main.
func Wrap(m Runner) Runner { return wrapped{m} }

// Main runs the tests through Wrap and exits with their status.
func Main(m Runner) { os.Exit(Wrap(m).Run()) }

// unavailable skips t for want of Redis and counts the skip for Main.
func unavailable(t testing.TB, err error) {
	t.Helper()
	noRedis.Lock()
	noRedis.skipped++
	if noRedis.reason == nil {
		noRedis.reason = err
	}
	noRedis.Unlock()
	t.Skipf("no Redis: %v", err)
}

// URL returns the URL of the shared standalone server, starting it on first
// use. It skips the test when there is none, which makes Main fail.
func URL(t testing.TB) string {
	t.Helper()
	sharedOnce.Do(func() {
		if u := os.Getenv("TEST_REDIS_URL"); u != "" {
			sharedURL = u
			sharedErr = ping(u)
			return
		}
		var s *Server
		s, sharedErr = startServer(false)
		if sharedErr == nil {
			sharedURL = s.URL()
		}
	})
	if sharedErr != nil {
		unavailable(t, sharedErr)
	}
	return sharedURL
}

// SharedCluster returns the cluster the tests share, starting it on first
// use. Tests must not kill its nodes: NewCluster gives a test its own.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	clusterOnce.Do(func() { shared, sharedCluErr = startCluster(false) })
	if sharedCluErr != nil {
		unavailable(t, sharedCluErr)
	}
	return shared
}

// NewServer starts a standalone server for t alone, stopped when t ends.
// A durable one writes every change to its append-only file before
// answering (appendonly yes, appendfsync always), so that Kill and Restart
// lose nothing acknowledged.
func NewServer(t testing.TB, durable bool) *Server {
	t.Helper()
	s, err := startServer(durable)
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(s.stop)
	return s
}

// NewCluster starts a three-master cluster for t alone, stopped when t
// ends; durable as for NewServer.
func NewCluster(t testing.TB, durable bool) *Cluster {
	t.Helper()
	c, err := startCluster(durable)
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.stop()
		}
	})
	return c
}

// Client returns a client for redisURL (a cluster when the URL has addr
// parameters), closed when t ends.
func Client(t testing.TB, redisURL string) redis.UniversalClient {
	t.Helper()
	c, err := newClient(redisURL)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newClient(redisURL string) (redis.UniversalClient, error) {
	u, cluster := strings.CutPrefix(redisURL, "cluster:")
	if cluster || strings.Contains(redisURL, "addr=") {
		opts, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, err
		}
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opts), nil
}

// Prefix returns a key prefix for t alone, "t<random>:", and deletes every
// key under it, on every master of client, when t ends.
func Prefix(t testing.TB, client redis.UniversalClient) string {
	t.Helper()
	prefix := "t" + randomHex(6) + ":"
	t.Cleanup(func() {
		if err := DeletePrefix(context.Background(), client, prefix); err != nil {
			t.Errorf("redistest: delete the test's keys: %v", err)
		}
	})
	return prefix
}

// DeletePrefix deletes every key under prefix. It scans, which tests may.
func DeletePrefix(ctx context.Context, client redis.UniversalClient, prefix string) error {
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Unlink(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, del)
	}
	return del(ctx, client.(*redis.Client))
}

// Keys returns the keys under prefix, on every master. It scans, which
// tests may.
func Keys(ctx context.Context, client redis.UniversalClient, prefix string) ([]string, error) {
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, scan)
		return keys, err
	}
	err := scan(ctx, client.(*redis.Client))
	return keys, err
}

// ping checks that the server at redisURL answers.
func ping(redisURL string) error {
	c, err := newClient(redisURL)
	if err != nil {
		return fmt.Errorf("TEST_REDIS_URL: %w", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("TEST_REDIS_URL does not answer: %w", err)
	}
	return nil
}

// Server is a redis-server process the harness started.
type Server struct {
	dir  string
	port int
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr returns the server's "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns redis://127.0.0.1:port.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Dir returns the server's directory, which holds its data and its log.
func (s *Server) Dir() string { return s.dir }

// Kill kills the server with SIGKILL, as a crash or an OOM killer would,
// and waits until it is gone. Its data directory stays for Restart.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatalf("redistest: kill %s: %v", s.Addr(), err)
	}
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port and directory (its
// append-only file and nodes.conf) and waits until it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restart %s: %v", s.Addr(), err)
	}
}

func redisServer() (string, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server is not on the PATH: install it (apt-get install redis-server redis-tools) or set TEST_REDIS_URL")
	}
	return path, nil
}

// startServer starts a server in a new directory on a free port. extra are
// more configuration directives ("--name", "value", ...).
func startServer(durable bool, extra ...string) (*Server, error) {
	bin, err := redisServer()
	if err != nil {
		return nil, err
	}
	reapOrphans()
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	appendonly := "no"
	if durable {
		appendonly = "yes"
	}
	s := &Server{dir: dir, port: port, args: append([]string{bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--logfile", filepath.Join(dir, "log"), "--daemonize", "no", "--protected-mode", "no",
		"--save", "", "--appendonly", appendonly, "--appendfsync", "always",
	}, extra...)}
	if err := s.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// start runs the server process and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		// Its exit status is of no interest: Kill and stop cause it.
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	// The pid file lets reapOrphans kill this server if the test binary
	// dies first.
	if err := os.WriteFile(filepath.Join(s.dir, "pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	running.Lock()
	if running.servers == nil {
		running.servers = map[*Server]bool{}
	}
	running.servers[s] = true
	running.Unlock()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	stop := time.Now().Add(deadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
			return fmt.Errorf("redis-server on port %d exited at start:\n%s", s.port, log)
		case <-time.After(10 * time.Millisecond): // polling the server, not ordering goroutines
		}
		if time.Now().After(stop) {
			return fmt.Errorf("redis-server on port %d did not answer within %v: %w", s.port, deadline, err)
		}
	}
}

// stop kills the server and deletes its directory.
func (s *Server) stop() {
	s.mu.Lock()
	if s.cmd != nil {
		// Best effort: the process may have exited already.
		_ = s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
	}
	s.mu.Unlock()
	running.Lock()
	delete(running.servers, s)
	running.Unlock()
	os.RemoveAll(s.dir)
}

// reapOrphans kills the servers of test binaries that died without running
// their cleanup (a -timeout panic, a kill), which would otherwise keep
// running, and deletes their directories. It reads /proc, so it does
// nothing where there is none.
func reapOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "redistest-*"))
	for _, dir := range dirs {
		owner, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + strings.TrimSpace(string(owner))); err == nil || !errors.Is(err, os.ErrNotExist) {
			continue // its owner lives, or this system has no /proc
		}
		if pid, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			n, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
			if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(n) + "/cmdline"); err == nil && strings.Contains(string(cmdline), "redis-server") {
				if p, err := os.FindProcess(n); err == nil {
					_ = p.Kill() // best effort: it may be exiting
				}
			}
		}
		os.RemoveAll(dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails; see crypto/rand.Read
	return hex.EncodeToString(b)
}
