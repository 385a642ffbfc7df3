// Command hotupdates measures what a busy session table costs on disk: it
// makes -writes Apply calls on the PostgreSQL store, each setting one
// value as the middleware does for a handler that calls Set, spread over -sessions
// sessions by -workers goroutines, on a table the migrations make in a
// schema of its own (dropped and made again at the start, left afterwards
// for "sessionctl stats"). bench/README.md reports its figures.
//
//	go run ./bench/hotupdates -database-url postgres://postgres@127.0.0.1:5432/test
//	USE_POSTGRES=true DATABASE_URL=... SESSION_TABLE=hotupdates.session go run ./cmd/sessionctl stats
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartscheduler/session"
)

func main() {
	url := flag.String("database-url", os.Getenv("TEST_DATABASE_URL"), "PostgreSQL `URL` (default TEST_DATABASE_URL)")
	schema := flag.String("schema", "hotupdates", "the `schema` to (re)make; the table is its \"session\"")
	writes := flag.Int("writes", 1000000, "Apply calls in all")
	sessions := flag.Int("sessions", 1000, "sessions the writes are spread over")
	workers := flag.Int("workers", 16, "concurrent writers, and the pool's size")
	flag.Parse()
	if *url == "" {
		log.Fatal("hotupdates: set -database-url or TEST_DATABASE_URL")
	}
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(*url)
	if err != nil {
		log.Fatalf("hotupdates: -database-url: %v", err)
	}
	cfg.MaxConns = int32(*workers)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	quoted := pgx.Identifier{*schema}.Sanitize()
	if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+quoted+" CASCADE"); err != nil {
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+quoted); err != nil {
		log.Fatal(err)
	}
	store, err := session.NewPostgresStore(ctx, pool, session.PostgresOptions{Table: *schema + ".session"})
	if err != nil {
		log.Fatal(err)
	}

	keys := make([]string, *sessions)
	now := time.Now()
	for i := range keys {
		sum := sha256.Sum256([]byte("hotupdates " + strconv.Itoa(i)))
		keys[i] = hex.EncodeToString(sum[:])
		rec := &session.Record{
			Values:     map[string]json.RawMessage{"n": json.RawMessage("0")},
			Created:    now,
			Expiry:     now.Add(24 * time.Hour),
			IdleExpiry: now.Add(30 * time.Minute),
			LastSeen:   now,
		}
		if err := store.Insert(ctx, keys[i], rec); err != nil {
			log.Fatal(err)
		}
	}

	// As the Manager sends them with SESSION_IDLE_TIMEOUT=30m, its default
	// TouchInterval (a tenth) and the default size cap.
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(*writes) {
					return
				}
				change := session.Change{
					Set:           map[string]json.RawMessage{"n": json.RawMessage(strconv.FormatInt(i, 10))},
					IdleTimeout:   30 * time.Minute,
					TouchInterval: 3 * time.Minute,
					MaxSize:       64 << 10,
				}
				if _, err := store.Apply(ctx, keys[i%int64(*sessions)], change); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()
	fmt.Printf("%d Apply calls over %d sessions from %d goroutines in %v; now: SESSION_TABLE=%s.session sessionctl stats\n",
		*writes, *sessions, *workers, time.Since(start).Round(time.Second), *schema)
}
