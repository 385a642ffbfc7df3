// Command scheduler is the Smart Scheduler: a small appointment book you
// sign in to, built on the session library. It shows what a real app does
// with sessions: Renew and SetUser at sign-in, flash messages after each
// action, sign-out, and a "Your sessions" page (Manager.UserSessions) that
// names each session's browser and system, its IP address, when it was
// last active and when it signed in (in the viewer's time zone), marks
// "This device", and offers Sign out for each other session
// (Manager.RevokeSession), "Sign out everywhere else"
// (Session.RevokeOthers) and "Sign out everywhere" (Manager.RevokeUser).
// A session.WithEvents hook logs each new sign-in's browser and system.
// Forms are protected against CSRF by http.CrossOriginProtection.
//
// On the in-memory store, with nothing configured:
//
//	go run ./examples/scheduler
//
// On PostgreSQL, where users stay signed in across restarts of the app:
//
//	USE_POSTGRES=true DATABASE_URL=postgres://user:password@localhost:5432/app go run ./examples/scheduler
//
// It reads the library's variables (NODE_ENV, USE_POSTGRES, DATABASE_URL,
// SESSION_SECRET, SESSION_*) and listens on ADDR, or on PORT on every
// interface, or by default on 127.0.0.1:8080. Behind a reverse proxy, set
// SESSION_TRUSTED_PROXIES to its address so that the sessions page shows
// the client's IP rather than the proxy's; SESSION_MAX_PER_USER caps how
// many sessions one user may have. SIGINT or SIGTERM stops it
// gracefully: requests in flight finish, then the session manager closes.
// The demo accounts are ada/lovelace and grace/hopper.
//
// Its tests include some in a real browser, headless chromium;
// browser_test.go says how to run them.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/smartscheduler/session"
)

// shutdownTimeout is how long requests in flight get to finish at
// shutdown; most orchestrators wait 30 seconds before killing.
const shutdownTimeout = 20 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.LookupEnv, os.Stdout, logger); err != nil {
		logger.Error("scheduler stopped", "error", err)
		stop()
		os.Exit(1)
	}
}

// run serves the app until ctx is done, then shuts it down gracefully. It
// prints the address it listens on to stdout once it accepts connections.
func run(ctx context.Context, env func(string) (string, bool), stdout io.Writer, logger *slog.Logger) error {
	cfg, err := session.ConfigFromLookup(env)
	if err != nil {
		return err
	}
	a, err := newApp(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer a.Close() // after Shutdown below: no request is left to use it

	listener, err := net.Listen("tcp", listenAddress(env))
	if err != nil {
		return fmt.Errorf("listen: %w (set ADDR or PORT to another address)", err)
	}
	server := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	store := "memory (sessions end when the app stops)"
	if cfg.UsePostgres {
		store = "PostgreSQL at " + databaseHost(cfg.DatabaseURL)
	}
	fmt.Fprintf(stdout, "Smart Scheduler on http://%s (sessions: %s)\n", displayAddress(listener.Addr()), store)

	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(stdout, "Shutting down: finishing requests in flight.")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// listenAddress is ADDR, else every interface on PORT (which platforms set
// and then expect to reach), else 127.0.0.1:8080, which no other machine
// can reach.
func listenAddress(env func(string) (string, bool)) string {
	if addr, ok := env("ADDR"); ok && addr != "" {
		return addr
	}
	if port, ok := env("PORT"); ok && port != "" {
		return ":" + port
	}
	return "127.0.0.1:8080"
}

// displayAddress is addr as a browser on this machine reaches it.
func displayAddress(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("localhost", fmt.Sprint(tcp.Port))
}

// databaseHost is where DATABASE_URL points, without its credentials.
func databaseHost(databaseURL string) string {
	pc, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		return "(unparsable DATABASE_URL)"
	}
	return fmt.Sprintf("%s:%d/%s", pc.Host, pc.Port, pc.Database)
}
