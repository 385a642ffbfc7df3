package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// report is everything one run measured, with what it ran on.
type report struct {
	// Store is the library's store: "postgres" or "redis".
	Store       string  `json:"store"`
	Date        string  `json:"date"`
	Command     string  `json:"command"`
	Machine     machine `json:"machine"`
	Workers     int     `json:"workers"`
	Duration    string  `json:"duration"`
	Sessions    int     `json:"sessions"`
	HotSessions int     `json:"hot_sessions"`
	// Seed is -seed: live and expired sessions in each table beforehand.
	Seed    int          `json:"seed,omitempty"`
	Results []result     `json:"results"`
	Prune   *pruneResult `json:"prune,omitempty"`
}

type machine struct {
	CPU        string `json:"cpu"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	OS         string `json:"os"`
	Go         string `json:"go"`
	PostgreSQL string `json:"postgresql,omitempty"`
	Redis      string `json:"redis,omitempty"`
}

// result is one server's run of one workload.
type result struct {
	Workload          string        `json:"workload"`
	Server            string        `json:"server"`
	Requests          int           `json:"requests"`
	RequestsPerSecond float64       `json:"requests_per_second"`
	P50               time.Duration `json:"p50_ns"`
	P99               time.Duration `json:"p99_ns"`
	Errors            int           `json:"errors"`
	// CPUPerRequest is this process's CPU time (load generator and server)
	// per request; PostgresCPUPerRequest that of the database processes
	// serving the server (its PostgreSQL backends, or the Redis server),
	// nil when they could not be read.
	CPUPerRequest         time.Duration  `json:"cpu_per_request_ns"`
	PostgresCPUPerRequest *time.Duration `json:"postgres_cpu_per_request_ns,omitempty"`
	LastError             string         `json:"last_error,omitempty"`
	// StatementsPerRequest counts every statement sent, BEGIN and COMMIT
	// included; StatementKinds splits it by first word.
	StatementsPerRequest float64            `json:"statements_per_request"`
	StatementKinds       map[string]float64 `json:"statement_kinds,omitempty"`
	// Ratio is the library's throughput over the baseline's; Target is the
	// least it should be. Both are zero on baseline rows.
	Ratio      float64 `json:"ratio,omitempty"`
	Target     float64 `json:"target,omitempty"`
	LostWrites *int64  `json:"lost_writes,omitempty"`
	// Lossy marks a workload whose handler loses writes by design
	// (get-put): LostWrites is what it shows, not a failure.
	Lossy bool `json:"lossy,omitempty"`
}

func describeMachine(ctx context.Context, pool *pgxpool.Pool) (machine, error) {
	m := hostMachine()
	err := pool.QueryRow(ctx, "SELECT 'PostgreSQL ' || current_setting('server_version')").Scan(&m.PostgreSQL)
	return m, err
}

// hostMachine describes this machine and the Go that runs the bench.
func hostMachine() machine {
	m := machine{
		CPU:        cpuModel(),
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
		Go:         runtime.Version(),
	}
	if release, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += ", Linux " + strings.TrimSpace(string(release))
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}

// writeTable prints the report as a Markdown table, ready for the README.
func (r *report) writeTable(w io.Writer) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "%s; %s\n", r.Date, r.Command)
	fmt.Fprintf(&b, "%s, %d CPUs (GOMAXPROCS %d), %s, %s, %s on the same machine\n", m.CPU, m.CPUs, m.GOMAXPROCS, m.OS, m.Go, cmpOr(m.PostgreSQL, m.Redis))
	fmt.Fprintf(&b, "%d closed-loop workers over loopback, %s per workload per server, %d sessions (%d in the hot workload)\n",
		r.Workers, r.Duration, r.Sessions, r.HotSessions)
	if r.Seed > 0 {
		fmt.Fprintf(&b, "each table seeded with %d live and %d expired sessions beforehand\n", r.Seed, r.Seed)
	}
	b.WriteString("\n")
	db, unit, what := "PG", "SQL/req", "statements per request"
	if r.Store == "redis" {
		db, unit, what = "Redis", "cmds/req", "commands per request"
	}
	fmt.Fprintf(&b, "| workload | server | req/s | p50 | p99 | errors | CPU µs/req: Go + %s | %s | %s | ratio | target |\n", db, unit, what)
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|---|--:|---|\n")
	for _, res := range r.Results {
		ratio := ""
		if res.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", res.Ratio)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %d | %s | %.2f | %s | %s | %s |\n",
			res.Workload, res.Server, res.RequestsPerSecond, formatLatency(res.P50), formatLatency(res.P99),
			res.Errors, formatCPU(res.CPUPerRequest, res.PostgresCPUPerRequest), res.StatementsPerRequest, formatKinds(res.StatementKinds), ratio, res.check(unit))
	}
	if p := r.Prune; p != nil {
		fmt.Fprintf(&b, "\nPruning %d expired sessions under the read load took %s (%.0f rows/s, %d slow batches); library read p99 %s quiet, %s during (%.2fx, %d reads)\n",
			p.Rows, p.Duration.Round(time.Millisecond), float64(p.Rows)/max(p.Duration.Seconds(), 1e-3), p.SlowBatches,
			formatLatency(p.QuietP99), formatLatency(p.DuringP99), float64(p.DuringP99)/max(float64(p.QuietP99), 1), p.Reads)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// check states the result's target and whether it was met; unit names
// what the database was sent per request.
func (res result) check(unit string) string {
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	var checks []string
	if res.Target > 0 {
		checks = append(checks, fmt.Sprintf("≥ %.2f: %s", res.Target, verdict(res.Ratio >= res.Target)))
	}
	switch {
	case res.LostWrites != nil && res.Lossy:
		checks = append(checks, fmt.Sprintf("%d increments lost (Value then Set)", *res.LostWrites))
	case res.LostWrites != nil:
		checks = append(checks, fmt.Sprintf("0 lost writes: %d, %s", *res.LostWrites, verdict(*res.LostWrites == 0)))
	}
	if res.Workload == "untouched" && res.Server == "library" {
		checks = append(checks, "0 "+unit+": "+verdict(res.StatementsPerRequest == 0))
	}
	return strings.Join(checks, "; ")
}

// failures lists what makes the run wrong rather than slow: errors, lost
// writes, statements from a request that never touched its session. What
// scs loses and loads is what the run shows of it, not a failure.
func (r *report) failures() []string {
	var problems []string
	for _, res := range r.Results {
		who := res.Workload + " on the " + res.Server
		if res.Errors > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d errors, the last: %s", who, res.Errors, res.LastError))
		}
		if res.LostWrites != nil && *res.LostWrites > 0 && res.Server != "scs" && !res.Lossy {
			problems = append(problems, fmt.Sprintf("%s: %d acknowledged writes lost", who, *res.LostWrites))
		}
		if res.Workload == "untouched" && res.StatementsPerRequest > 0 && res.Server != "scs" {
			problems = append(problems, fmt.Sprintf("%s: %.2f statements or commands per request that never touched its session", who, res.StatementsPerRequest))
		}
	}
	return problems
}

func formatLatency(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func formatKinds(kinds map[string]float64) string {
	// SQL in statementKinds' order, then Redis commands by name.
	names := slices.Collect(maps.Keys(kinds))
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(kindRank(a), kindRank(b)), strings.Compare(a, b))
	})
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%.2f %s", kinds[k], k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " + ")
}

func kindRank(kind string) int {
	if i := slices.Index(statementKinds[:], kind); i >= 0 {
		return i
	}
	return len(statementKinds)
}

func formatCPU(process time.Duration, postgres *time.Duration) string {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	if postgres == nil {
		return fmt.Sprintf("%.0f + ?", us(process))
	}
	return fmt.Sprintf("%.0f + %.0f", us(process), us(*postgres))
}
