package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/smartscheduler/session/internal/pgtest"
	"github.com/smartscheduler/session/internal/redistest"
)

func TestMain(m *testing.M) { pgtest.Main(redistest.Wrap(m)) }

// TestWorkloads runs every workload briefly and checks what must hold at any
// speed: no errors, no lost writes, and the exact statements each kind of
// request costs. Throughput is not checked; that is for the real run.
func TestWorkloads(t *testing.T) {
	opts := options{
		databaseURL: pgtest.URL(t),
		workers:     4,
		duration:    300 * time.Millisecond,
		sessions:    20,
		hotSessions: 2,
		workloads:   workloads,
		idleTimeout: 30 * time.Minute,
	}
	rep, err := run(context.Background(), opts, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range rep.failures() {
		t.Error(problem)
	}
	checkCounter(t, rep)
	checkKinds(t, rep, 14, map[string]map[string]map[string]float64{
		"library": {
			"untouched": {},
			"read":      {"SELECT": 1},
			"read-idle": {"SELECT": 1},
			"write":     {"UPDATE": 1},
			"new":       {"INSERT": 1},
			// Value then Set: a read and a blind write.
			"get-put": {"SELECT": 1, "UPDATE": 1},
		},
		"baseline": {
			"untouched": {},
			"read":      {"SELECT": 1},
			"read-idle": {"SELECT": 1},
			"write":     {"UPDATE": 1},
			"new":       {"INSERT": 1},
			"hot":       {"UPDATE": 1},
			"counter":   {"UPDATE": 1},
			"get-put":   {"UPDATE": 1},
		},
	})
}

// TestRedisWorkloads is TestWorkloads for -store redis: no errors, no
// writes lost by the library or the floor (scs loses some on the hot
// workload, which the run reports), and one command per request where
// the floor makes one.
func TestRedisWorkloads(t *testing.T) {
	opts := options{
		store:       "redis",
		redisURL:    redistest.URL(t),
		workers:     4,
		duration:    300 * time.Millisecond,
		sessions:    20,
		hotSessions: 2,
		workloads:   workloads,
		idleTimeout: 30 * time.Minute,
	}
	rep, err := run(context.Background(), opts, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range rep.failures() {
		t.Error(problem)
	}
	checkKinds(t, rep, 16, map[string]map[string]map[string]float64{
		"library": {
			"untouched": {},
			"read":      {"HGETALL": 1},
			"read-idle": {"HGETALL": 1},
			"write":     {"EVALSHA": 1},
			"new":       {"EVALSHA": 1},
		},
		"floor": {
			"untouched": {},
			"read":      {"GET": 1},
			"write":     {"HSET": 1},
			"new":       {"SET": 1},
		},
		"scs": {
			"untouched": {"GET": 1}, // scs loads every request's session
			"read":      {"GET": 1},
			"write":     {"GET": 1, "SET": 1},
			"new":       {"SET": 1},
			"hot":       {"GET": 1, "SET": 1},
			"counter":   {"GET": 1, "SET": 1},
			"read-idle": {"GET": 1, "SET": 1},
		},
	})
}

// checkKinds checks the statements (or commands) per request of every
// kind, where they are deterministic: outside the hot workload each worker
// has sessions of its own, so no request waits on another's. want has
// results by server and workload; exactly n of them must be checked.
// checkCounter checks the statements of the library's Update[T]: one
// UPDATE on a session the process wrote last, which is most of them; the
// locked read's BEGIN, SELECT ... FOR UPDATE, UPDATE and COMMIT for the
// first Update of each hot session (in the warm-up, which is not counted)
// and after an UPDATE that found the row changed by an overlapping first
// one.
func checkCounter(t *testing.T, rep *report) {
	t.Helper()
	for _, res := range rep.Results {
		if res.Server != "library" || res.Workload != "counter" {
			continue
		}
		k := res.StatementKinds
		others := len(k) - 1
		if k["BEGIN"] > 0 {
			others -= 3
		}
		if others != 0 || k["BEGIN"] != k["SELECT"] || k["BEGIN"] != k["COMMIT"] || k["BEGIN"] > 0.5 || k["UPDATE"] < 1 || k["UPDATE"] > 1+k["BEGIN"] {
			t.Errorf("counter on the library: statements per request %v; want one UPDATE, and a locked read for a few", k)
		}
		return
	}
	t.Error("no counter result on the library")
}

func checkKinds(t *testing.T, rep *report, n int, want map[string]map[string]map[string]float64) {
	t.Helper()
	seen := 0
	for _, res := range rep.Results {
		if res.Requests == 0 {
			t.Errorf("%s on the %s: no requests", res.Workload, res.Server)
			continue
		}
		if (res.Workload == "hot" || res.Workload == "counter" || res.Workload == "get-put") && res.LostWrites == nil {
			t.Errorf("%s on the %s: lost writes were not checked", res.Workload, res.Server)
		}
		kinds, ok := want[res.Server][res.Workload]
		if !ok {
			continue
		}
		seen++
		if len(res.StatementKinds) != len(kinds) {
			t.Errorf("%s on the %s: statements per request %v, want %v", res.Workload, res.Server, res.StatementKinds, kinds)
			continue
		}
		for kind, n := range kinds {
			if res.StatementKinds[kind] != n {
				t.Errorf("%s on the %s: statements per request %v, want %v", res.Workload, res.Server, res.StatementKinds, kinds)
			}
		}
	}
	if seen != n {
		t.Errorf("checked statements of %d results, want %d", seen, n)
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults", nil, true},
		{"quick", []string{"-duration", "2s", "-workers", "4", "-workloads", "read,write"}, true},
		{"unknown workload", []string{"-workloads", "read,delete"}, false},
		{"fewer sessions than workers", []string{"-workers", "8", "-sessions", "4"}, false},
		{"no workers", []string{"-workers", "0"}, false},
		{"stray argument", []string{"read"}, false},
		{"redis", []string{"-store", "redis", "-redis-url", "redis://127.0.0.1:6379/0"}, true},
		{"unknown store", []string{"-store", "mongo"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseFlags(tt.args)
			if (err == nil) != tt.ok {
				t.Errorf("parseFlags(%q) = %v, want ok %v", tt.args, err, tt.ok)
			}
		})
	}
}

// TestSeedAndPruneUnderLoad: -seed fills both tables, the Managers leave
// the expired rows alone, and the prune phase under load deletes exactly
// the seeded expired rows with every read answered.
func TestSeedAndPruneUnderLoad(t *testing.T) {
	opts := options{
		databaseURL: pgtest.URL(t),
		workers:     4,
		duration:    300 * time.Millisecond,
		sessions:    20,
		hotSessions: 2,
		workloads:   []workload{workloads[indexWorkload("read")]},
		idleTimeout: 30 * time.Minute,
		seed:        500,
	}
	rep, err := run(context.Background(), opts, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range rep.failures() {
		t.Error(problem)
	}
	if p := rep.Prune; p == nil || p.Rows != 500 || p.Reads == 0 || p.QuietP99 <= 0 || p.DuringP99 <= 0 {
		t.Errorf("prune under load = %+v; want the 500 seeded expired rows pruned, with reads measured before and during", p)
	}
}
