package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/smartscheduler/session/internal/expressimport"
)

func runStats(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("stats", "[--json] [--env-file FILE]", `
Counts the session table's rows: live sessions, those signed in to a user,
expired rows waiting to be pruned (a number that only grows means no app
instance is pruning). Then how the table holds up on disk: its size and
its indexes', dead rows waiting for vacuum, the share of updates that were
HOT (updates that add no index entry: near 100% means writes stay cheap
and indexes do not bloat), its fillfactor, and when autovacuum last ran.
With SESSION_EXPRESS_TABLE set, also the move from express-session: the
Node table's rows, and the sessions moved so far. It reads the whole table, so it is for operators and dashboards, not
health checks.`)
	asJSON := fs.Bool("json", false, "print the numbers as JSON")
	flags := addDatabaseFlags(fs)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if cfg, ok := redisConfig(env, flags); ok {
		return redisStats(ctx, cfg, flags, *asJSON, stdout, stderr)
	}
	return withTable(ctx, "stats", env, flags, stderr, func(ctx context.Context, t *table) error {
		st, err := tableStats(ctx, t)
		if err != nil {
			return err
		}
		if st.Express, err = expressStats(ctx, t); err != nil {
			return err
		}
		if *asJSON {
			writeJSON(stdout, st)
			return nil
		}
		fmt.Fprintf(stdout, "table          %s\n", st.Table)
		fmt.Fprintf(stdout, "live sessions  %d\n", st.Live)
		fmt.Fprintf(stdout, "with a user    %d\n", st.WithUser)
		fmt.Fprintf(stdout, "expired rows   %d (deleted by the next prune)\n", st.Expired)
		fmt.Fprintf(stdout, "table size     %s, indexes %s (%s in all)\n", formatBytes(st.HeapBytes), formatBytes(st.IndexBytes), formatBytes(st.TableBytes))
		fmt.Fprintf(stdout, "dead rows      %d (vacuum reclaims them)\n", st.DeadRows)
		if st.Updates > 0 {
			fmt.Fprintf(stdout, "HOT updates    %.1f%% of %d (the rest add index entries)\n", 100*float64(st.HOTUpdates)/float64(st.Updates), st.Updates)
		} else {
			fmt.Fprintln(stdout, "HOT updates    no updates counted yet")
		}
		fmt.Fprintf(stdout, "fillfactor     %d\n", st.Fillfactor)
		if st.LastAutovacuum != nil {
			fmt.Fprintf(stdout, "autovacuum     last ran %s ago\n", st.DatabaseTime.Sub(*st.LastAutovacuum).Round(time.Second))
		} else {
			fmt.Fprintln(stdout, "autovacuum     has not run on this table")
		}
		printExpressStats(stdout, st.Express)
		return nil
	})
}

// stats describes the session table: its rows, and how it holds up on
// disk.
type stats struct {
	Table          string     `json:"table"`
	Live           int64      `json:"live"`
	WithUser       int64      `json:"with_user"`
	Expired        int64      `json:"expired"`
	TableBytes     int64      `json:"table_bytes"` // heap, TOAST and indexes
	HeapBytes      int64      `json:"heap_bytes"`
	IndexBytes     int64      `json:"index_bytes"`
	DeadRows       int64      `json:"dead_rows"`
	Updates        int64      `json:"updates"`
	HOTUpdates     int64      `json:"hot_updates"`
	Fillfactor     int        `json:"fillfactor"`
	LastAutovacuum *time.Time `json:"last_autovacuum,omitempty"`
	DatabaseTime   time.Time  `json:"database_time"`
	// Express is the move from express-session, when
	// SESSION_EXPRESS_TABLE is set.
	Express *expressimport.Counts `json:"express,omitempty"`
}

// tableStats counts the table's rows and reads its statistics. Counting
// reads the whole table: for operators and dashboards, not health checks.
// The update counts are the server's since its statistics were last
// reset.
func tableStats(ctx context.Context, t *table) (stats, error) {
	const live = "LEAST(expires_at, idle_expires_at) > now()"
	st := stats{Table: t.name.String()}
	err := t.pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE "+live+"), count(*) FILTER (WHERE NOT "+live+"),"+
		" count(*) FILTER (WHERE "+live+" AND user_id IS NOT NULL), now() FROM "+t.name.String()).
		Scan(&st.Live, &st.Expired, &st.WithUser, &st.DatabaseTime)
	if err != nil {
		return st, err
	}
	err = t.pool.QueryRow(ctx, `SELECT pg_total_relation_size(c.oid), pg_table_size(c.oid), pg_indexes_size(c.oid),
	COALESCE(s.n_dead_tup, 0), COALESCE(s.n_tup_upd, 0), COALESCE(s.n_tup_hot_upd, 0),
	COALESCE((SELECT split_part(o, '=', 2)::int FROM unnest(c.reloptions) o WHERE o LIKE 'fillfactor=%'), 100),
	GREATEST(s.last_autovacuum, s.last_vacuum)
FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = $1::text::regclass`, t.name.String()).
		Scan(&st.TableBytes, &st.HeapBytes, &st.IndexBytes, &st.DeadRows, &st.Updates, &st.HOTUpdates, &st.Fillfactor, &st.LastAutovacuum)
	return st, err
}
