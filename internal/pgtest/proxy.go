package pgtest

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of the test server, which the
// test can cut to simulate an outage of the database and then restore,
// without restarting the code under test. Make one with NewProxy.
type Proxy struct {
	listener net.Listener
	upstream string
	url      string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy starts a proxy to the test server, stopped when the test ends.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	serverURL := URL(t)
	cfg, err := pgconn.ParseConfig(serverURL)
	if err != nil {
		t.Fatalf("parse test database URL: %v", err)
	}
	if len(cfg.Host) > 0 && cfg.Host[0] == '/' {
		t.Skip("the test server is on a unix socket; the outage proxy needs TCP")
	}
	p := NewTCPProxy(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	p.url, err = withHostPort(serverURL, p.Addr())
	if err != nil {
		t.Fatalf("proxy URL: %v", err)
	}
	return p
}

// NewTCPProxy starts a proxy to upstream ("host:port"), any TCP server (a
// Redis server, say), stopped when the test ends. Its URL is empty: point
// the client at Addr.
func NewTCPProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{listener: l, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr returns the proxy's "host:port".
func (p *Proxy) Addr() string { return p.listener.Addr().String() }

// URL returns the test server's URL rewritten to go through the proxy, or
// "" for a proxy made by NewTCPProxy.
func (p *Proxy) URL() string { return p.url }

// Cut closes every connection through the proxy and refuses new ones until
// Restore, as a database outage would.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets new connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *Proxy) close() {
	p.listener.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.listener.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		p.wg.Add(1)
		go p.pipe(client)
	}
}

// pipe connects client to the server. A connection accepted while cut is
// closed at once: the client sees the server hang up, as when PostgreSQL is
// down behind a load balancer.
func (p *Proxy) pipe(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		client.Close()
		return
	}
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.upstream, deadline)
	if err != nil {
		return
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	copyHalf := func(dst, src net.Conn) {
		// An error here is the connection closing, which is how a pipe ends.
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go copyHalf(server, client)
	go copyHalf(client, server)
	<-done
	// Closing both ends stops the other copy.
	client.Close()
	server.Close()
	<-done
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	c.Close()
}
