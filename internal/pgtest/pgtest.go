// Package pgtest gives tests a real PostgreSQL server and a fresh schema per
// test.
//
// The server is TEST_DATABASE_URL when set. Otherwise the first test that
// asks starts one throwaway cluster for the whole test binary, in a
// temporary directory, on a free port of 127.0.0.1; Main stops it. The
// cluster is made with the initdb and pg_ctl on the PATH or, when the PATH
// has none, those of the newest version in /usr/lib/postgresql/VERSION/bin
// (where Debian and Ubuntu keep them, off the PATH), or of
// /usr/local/pgsql/bin (a build from source).
//
// Without a server the tests that need one skip, and Main then makes the
// package FAIL, printing how many tests skipped, why, and the fix. A skip
// must fail because nothing else would be seen: in package-list mode
// ("go test ./..."), go test prints a single "ok" line for a package that
// passes and discards everything its test binary wrote, to stdout or stderr
// alike; only a failing package's output is shown. Setting
// SESSION_ALLOW_NO_POSTGRES=1 lets such a package pass, for a machine
// meant to run the other tests only.
//
// Every package that uses pgtest runs its tests through Main:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Main takes anything with testing.M's Run method, so that another
// harness can wrap m (redistest.Wrap).
package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	serverOnce sync.Once
	serverURL  string
	serverErr  error // why there is no server; reported by every test that asks
	cluster    *localCluster
	admin      *pgxpool.Pool
)

// noServer counts the tests skipped for want of PostgreSQL, for Main.
var noServer struct {
	sync.Mutex
	skipped int
	reason  error // the first skip's
}

// Main runs the tests and stops the throwaway cluster, if one was started,
// before the binary exits. If any test skipped for want of PostgreSQL, it
// makes the package fail (see the package documentation for why) unless
// SESSION_ALLOW_NO_POSTGRES=1.
func Main(m interface{ Run() int }) {
	code := m.Run()
	if admin != nil {
		admin.Close()
	}
	if cluster != nil {
		if err := cluster.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}
	noServer.Lock()
	skipped, reason := noServer.skipped, noServer.reason
	noServer.Unlock()
	if skipped > 0 {
		tests := "tests"
		if skipped == 1 {
			tests = "test"
		}
		if os.Getenv("SESSION_ALLOW_NO_POSTGRES") == "1" {
			fmt.Fprintf(os.Stderr, "pgtest: %d %s skipped for want of PostgreSQL (%v); passing anyway, as SESSION_ALLOW_NO_POSTGRES=1 asks\n", skipped, tests, reason)
		} else {
			fmt.Fprintf(os.Stderr, "pgtest: FAIL: %d %s skipped for want of PostgreSQL: %v\n"+
				"pgtest: a skip fails the package, since \"go test ./...\" would show a passing package as \"ok\" and nothing else.\n"+
				"pgtest: to let it pass without PostgreSQL, set SESSION_ALLOW_NO_POSTGRES=1.\n", skipped, tests, reason)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// URL returns the URL of the test server, starting it on first use. It skips
// the test when no server can be had, which makes Main fail the package.
func URL(t testing.TB) string {
	t.Helper()
	serverOnce.Do(func() {
		serverURL, serverErr = findServer()
		if serverErr == nil {
			admin, serverErr = pgxpool.New(context.Background(), serverURL)
		}
	})
	if serverErr != nil {
		unavailable(t, serverErr)
	}
	return serverURL
}

// unavailable skips t for want of the PostgreSQL that err says it cannot
// have, and counts the skip for Main.
func unavailable(t testing.TB, err error) {
	t.Helper()
	noServer.Lock()
	noServer.skipped++
	if noServer.reason == nil {
		noServer.reason = err
	}
	noServer.Unlock()
	t.Skipf("no PostgreSQL: %v", err)
}

// serverToolDirs are where serverTools looks when initdb and pg_ctl are not
// on the PATH: Debian and Ubuntu keep each installed major version's in
// /usr/lib/postgresql/VERSION/bin, and a build from source installs into
// /usr/local/pgsql/bin. Of several directories a pattern matches, the one
// with the highest version comes first.
var serverToolDirs = []string{"/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin"}

// serverTools finds initdb and pg_ctl: on the PATH, else both in one of
// serverToolDirs, so that the two are of the same version.
func serverTools() (initdb, pgCtl string, err error) {
	initdb, err1 := exec.LookPath("initdb")
	pgCtl, err2 := exec.LookPath("pg_ctl")
	if err1 == nil && err2 == nil {
		return initdb, pgCtl, nil
	}
	for _, pattern := range serverToolDirs {
		// The patterns are well-formed, so Glob's only error cannot happen.
		dirs, _ := filepath.Glob(pattern)
		slices.SortFunc(dirs, newestFirst)
		for _, dir := range dirs {
			initdb, err1 := exec.LookPath(filepath.Join(dir, "initdb"))
			pgCtl, err2 := exec.LookPath(filepath.Join(dir, "pg_ctl"))
			if err1 == nil && err2 == nil {
				return initdb, pgCtl, nil
			}
		}
	}
	return "", "", fmt.Errorf("initdb and pg_ctl are in none of: %s", strings.Join(append([]string{"the PATH"}, serverToolDirs...), ", "))
}

// newestFirst orders paths that differ by a version number, highest first:
// runs of digits compare as numbers, so .../15/bin comes before .../9.6/bin.
func newestFirst(a, b string) int {
	for a != "" && b != "" {
		da, db := leadingDigits(a), leadingDigits(b)
		if da == "" || db == "" {
			if a[0] != b[0] {
				return cmp.Compare(b[0], a[0])
			}
			a, b = a[1:], b[1:]
			continue
		}
		na, nb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
		if c := cmp.Compare(len(nb), len(na)); c != 0 {
			return c
		}
		if c := strings.Compare(nb, na); c != 0 {
			return c
		}
		a, b = a[len(da):], b[len(db):]
	}
	return cmp.Compare(len(b), len(a))
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// Pool returns a new pool on the test server, closed when the test ends.
// Tests that need their own pool configuration (a tracer, a pool size) use
// Config instead.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return NewPool(t, Config(t, URL(t)))
}

// Config parses databaseURL into a pool configuration for the test to adjust
// and pass to NewPool.
func Config(t testing.TB, databaseURL string) *pgxpool.Config {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		t.Fatalf("parse test database URL: %v", err)
	}
	return cfg
}

// NewPool opens a pool with cfg, closed when the test ends.
func NewPool(t testing.TB, cfg *pgxpool.Config) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open test pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Schema creates an empty schema for the test, dropped with everything in it
// when the test ends, and returns a session table name inside it, such as
// "t_0123abcd4567ef89.session", for PostgresOptions.Table. Tests that each
// use their own schema can run in parallel.
func Schema(t testing.TB) string {
	t.Helper()
	URL(t)
	schema := "t_" + randomHex(8)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
		}
	})
	return schema + ".session"
}

// Exec runs sql on the test server with the administrator's pool, failing the
// test on error. It is for arranging state the code under test cannot.
func Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	URL(t)
	if _, err := admin.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// Role creates a login role with no privileges beyond those of PUBLIC,
// dropped with whatever it owns or was granted when the test ends, and
// returns its name and the test server's URL logging in as it. It is for
// tests of what an application's unprivileged role may and may not do.
// The role has no password: the test server trusts local connections.
func Role(t testing.TB) (name, roleURL string) {
	t.Helper()
	base := URL(t)
	name = "r_" + randomHex(8)
	Exec(t, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" LOGIN")
	t.Cleanup(func() {
		ctx := context.Background()
		for _, sql := range []string{"DROP OWNED BY ", "DROP ROLE "} {
			if _, err := admin.Exec(ctx, sql+pgx.Identifier{name}.Sanitize()); err != nil {
				t.Errorf("drop test role %s: %v", name, err)
				return
			}
		}
	})
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest.Role needs a postgres:// URL for the test server, not %q", base)
	}
	u.User = url.User(name)
	return name, u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func findServer() (string, error) {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u, nil
	}
	initdb, pgCtl, err := serverTools()
	if err != nil {
		return "", fmt.Errorf("TEST_DATABASE_URL is not set and %w: set TEST_DATABASE_URL or install PostgreSQL (apt-get install postgresql)", err)
	}
	c, err := startCluster(initdb, pgCtl)
	if err != nil {
		return "", fmt.Errorf("start a throwaway cluster: %w (or set TEST_DATABASE_URL)", err)
	}
	cluster = c
	return c.url, nil
}

// localCluster is a PostgreSQL cluster in a temporary directory, owned by
// one test binary.
type localCluster struct {
	dir   string
	pgCtl string
	url   string
	user  clusterUser
}

// startCluster initialises a cluster and starts it, without durability.
func startCluster(initdb, pgCtl string) (*localCluster, error) {
	c, port, err := initCluster(initdb, pgCtl)
	if err != nil {
		return nil, err
	}
	c.reapOrphans()
	// Durability is worthless for a cluster deleted after the run; turning
	// it off makes the tests several times faster.
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, c.dir)
	if err := c.start(opts); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	c.url = clusterURL(port)
	return c, nil
}

// initCluster makes a cluster's directory, gives it to the user the cluster
// runs as (see userFor), records this process as its owner, picks a free
// port and runs initdb. On failure it leaves nothing behind.
func initCluster(initdb, pgCtl string) (*localCluster, int, error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, 0, err
	}
	c := &localCluster{dir: dir, pgCtl: pgCtl}
	if c.user, err = userFor(dir); err != nil {
		os.RemoveAll(dir)
		return nil, 0, err
	}
	// The owner file lets reapOrphans stop this cluster if the test binary
	// dies before its cleanup runs.
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, 0, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, 0, err
	}
	if err := c.run(initdb, "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, 0, err
	}
	return c, port, nil
}

func clusterURL(port int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// start starts the server with the given server options and waits until it
// accepts connections; its error carries the server's log.
func (c *localCluster) start(opts string) error {
	if err := c.run(c.pgCtl, "-D", filepath.Join(c.dir, "data"), "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("%w\n%s", err, log)
	}
	return nil
}

// pgCtlStop stops the server in pg_ctl's shutdown mode.
func (c *localCluster) pgCtlStop(mode string) error {
	return c.run(c.pgCtl, "-D", filepath.Join(c.dir, "data"), "-m", mode, "-w", "stop")
}

// reapOrphans stops and deletes the clusters of test binaries that died
// without running Main's cleanup (a -timeout panic, a kill), which would
// otherwise keep running after the test run.
func (c *localCluster) reapOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*"))
	for _, dir := range dirs {
		owner, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue // being set up right now, or not ours
		}
		pid, err := strconv.Atoi(string(owner))
		if err != nil || !processExited(pid) {
			continue
		}
		orphan := &localCluster{dir: dir, pgCtl: c.pgCtl, user: c.user}
		// Best effort: pg_ctl fails when the server is already gone, and
		// the directory is removed either way.
		_ = orphan.stop()
	}
}

func (c *localCluster) stop() error {
	defer os.RemoveAll(c.dir)
	return c.pgCtlStop("immediate")
}

func (c *localCluster) run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	c.user.apply(cmd, c.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), args[len(args)-1], err, out)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// withHostPort returns databaseURL pointing at addr ("host:port") instead of
// its own server.
func withHostPort(databaseURL, addr string) (string, error) {
	if strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://") {
		u, err := url.Parse(databaseURL)
		if err != nil {
			return "", err
		}
		u.Host = addr
		q := u.Query()
		q.Del("host")
		q.Del("port")
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	// In keyword/value form a later setting wins.
	return databaseURL + " host=" + host + " port=" + port, nil
}

// deadline bounds the harness's own waits so a broken server fails a test
// instead of hanging it.
const deadline = 30 * time.Second
