package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
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
// ends. It needs initdb and pg_ctl, found as for the shared server; without
// them it skips the test as URL does, which fails the package (see Main).
// It takes a couple of seconds.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	initdb, pgCtl, err := serverTools()
	if err != nil {
		unavailable(t, fmt.Errorf("%w: a restartable cluster needs them (apt-get install postgresql)", err))
	}
	lc, port, err := initCluster(initdb, pgCtl)
	if err != nil {
		t.Fatalf("pgtest cluster: %v", err)
	}
	c := &Cluster{
		c: lc,
		// fsync=off only risks data when the machine itself crashes; a
		// stopped or killed server still keeps every commit it
		// acknowledged, because synchronous_commit stays on.
		opts: fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=100", port, lc.dir),
		url:  clusterURL(port),
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
	if err := c.c.start(c.opts); err != nil {
		t.Fatalf("pgtest cluster: %v", err)
	}
}

// Stop stops the server. Mode is pg_ctl's shutdown mode: "fast" ends every
// session and checkpoints, as a restart by an operator does; "immediate"
// kills the server without a checkpoint, as a crash does.
func (c *Cluster) Stop(t testing.TB, mode string) {
	t.Helper()
	if err := c.c.pgCtlStop(mode); err != nil {
		t.Fatalf("pgtest cluster: %v", err)
	}
}

// RequirePasswords creates a login role with password and makes the
// cluster ask every role but postgres for its password over TCP
// (scram-sha-256), as a production server does; postgres stays trusted,
// so URL still works. The cluster keeps refusing TLS, so a client in
// sslmode=prefer (pgx's default) first tries TLS, as it would against many
// servers. It restarts the cluster to load the new pg_hba.conf: a reload
// would take effect at a moment the test cannot observe.
func (c *Cluster) RequirePasswords(t testing.TB, role, password string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatalf("pgtest cluster: %v", err)
	}
	_, err = conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN PASSWORD '"+strings.ReplaceAll(password, "'", "''")+"'")
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("pgtest cluster: create role %s: %v", role, err)
	}
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(c.c.dir, "data", "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatalf("pgtest cluster: %v", err)
	}
	c.Stop(t, "fast")
	c.Start(t)
}
