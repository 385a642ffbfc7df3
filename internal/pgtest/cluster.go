package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// Cluster is a PostgreSQL server of the test's own, which the test can stop
// and start again on the same port and data directory: a real restart of the
// database, as an operator's or a crash's, with the code under test left
// running. Make one with NewCluster.
//
// Unlike the shared server, it keeps synchronous_commit on, so a transaction
// acknowledged before Stop survives it however abrupt the stop.
type Cluster struct {
	c    *localCluster
	opts string
	url  string
}

// NewCluster initialises and starts a cluster for t, deleted when the test
// ends. It needs initdb and pg_ctl on the PATH and skips the test without
// them. It takes a couple of seconds.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	initdb, err1 := exec.LookPath("initdb")
	pgCtl, err2 := exec.LookPath("pg_ctl")
	if err1 != nil || err2 != nil {
		t.Skip("initdb or pg_ctl is not on the PATH: a restartable cluster needs them (apt-get install postgresql)")
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	lc := &localCluster{dir: dir, pgCtl: pgCtl}
	if os.Geteuid() == 0 {
		lc.cred, err = unprivileged()
		if err == nil {
			err = os.Chown(dir, int(lc.cred.Uid), int(lc.cred.Gid))
		}
		if err != nil {
			os.RemoveAll(dir)
			t.Fatalf("pgtest cluster: running as root and %v", err)
		}
	}
	// The owner file lets reapOrphans stop this cluster if the test binary
	// dies before its cleanup runs.
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	if err := lc.run(initdb, "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	c := &Cluster{
		c: lc,
		// fsync=off only risks data when the machine itself crashes; a
		// stopped or killed server still keeps every commit it
		// acknowledged, because synchronous_commit stays on.
		opts: fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=100", port, dir),
		url:  fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
	}
	t.Cleanup(func() {
		if err := lc.stop(); err != nil {
			t.Logf("pgtest cluster: %v", err)
		}
	})
	c.Start(t)
	return c
}

// URL returns the cluster's connection URL, valid across restarts.
func (c *Cluster) URL() string { return c.url }

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	data := filepath.Join(c.c.dir, "data")
	if err := c.c.run(c.c.pgCtl, "-D", data, "-l", filepath.Join(c.c.dir, "log"), "-w", "-t", "60", "-o", c.opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.c.dir, "log"))
		t.Fatalf("pgtest cluster: %v\n%s", err, log)
	}
}

// Stop stops the server. Mode is pg_ctl's shutdown mode: "fast" ends every
// session and checkpoints, as a restart by an operator does; "immediate"
// kills the server without a checkpoint, as a crash does.
func (c *Cluster) Stop(t testing.TB, mode string) {
	t.Helper()
	if err := c.c.run(c.c.pgCtl, "-D", filepath.Join(c.c.dir, "data"), "-m", mode, "-w", "stop"); err != nil {
		t.Fatalf("pgtest cluster: %v", err)
	}
}
