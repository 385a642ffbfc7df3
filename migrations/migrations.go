// Package migrations creates and upgrades the PostgreSQL schema of the
// session store.
//
// Each change is a numbered SQL file embedded in the binary, so the schema
// always matches the code that uses it. Apply runs the pending ones in order,
// each in its own transaction under an advisory lock, and records them in a
// table beside the session table: any number of processes may call it at
// once and each change is applied exactly once.
package migrations

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed *.sql
var files embed.FS

// DefaultTable is the session table used when none is configured.
const DefaultTable = "session"

// maxIdentifier is PostgreSQL's NAMEDATALEN-1: longer names are silently
// truncated by the server, so two long names could end up the same.
const maxIdentifier = 63

// DB is what Apply and Status need from a connection. *pgxpool.Pool,
// *pgx.Conn and pgx.Tx satisfy it.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Table names the session table and so every object the migrations create
// beside it. Names are used exactly as given, as quoted identifiers: "Session"
// and "session" are different tables. Make one with ParseTable.
type Table struct {
	// Schema is the schema holding the table, or "" for the first schema on
	// the search_path; Resolve fills it in.
	Schema string
	// Name is the table's name.
	Name string
}

// ParseTable validates name, which is "table" or "schema.table". It rejects
// empty parts, NUL bytes, invalid UTF-8 and parts longer than PostgreSQL's
// 63-byte limit. Any other character, quotes and semicolons included, is
// allowed: names are always sent quoted, never as SQL.
func ParseTable(name string) (Table, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return Table{}, fmt.Errorf("session table name %q has %d dot-separated parts: use \"table\" or \"schema.table\"", name, len(parts))
	}
	for _, p := range parts {
		switch {
		case p == "":
			return Table{}, fmt.Errorf("session table name %q has an empty part: use \"table\" or \"schema.table\"", name)
		case strings.ContainsRune(p, 0):
			return Table{}, fmt.Errorf("session table name %q contains a NUL byte, which PostgreSQL names cannot hold", name)
		case !utf8.ValidString(p):
			return Table{}, fmt.Errorf("session table name %q is not valid UTF-8", name)
		case len(p) > maxIdentifier:
			return Table{}, fmt.Errorf("session table name part %q is %d bytes; PostgreSQL allows at most %d", p, len(p), maxIdentifier)
		}
	}
	if len(parts) == 1 {
		return Table{Name: parts[0]}, nil
	}
	return Table{Schema: parts[0], Name: parts[1]}, nil
}

// Resolve returns t with Schema set: unchanged when t names its schema,
// otherwise the database's current_schema(). Resolving once, up front, makes
// every later statement, lock and message refer to the same table whatever
// the search_path of the connection that runs it.
func (t Table) Resolve(ctx context.Context, db DB) (Table, error) {
	if t.Schema != "" {
		return t, nil
	}
	var schema *string
	if err := db.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return t, fmt.Errorf("find the schema for session table %q: %w", t.Name, err)
	}
	if schema == nil {
		return t, fmt.Errorf("session table %q: no schema on the search_path exists: name the schema, as \"schema.%s\"", t.Name, t.Name)
	}
	t.Schema = *schema
	return t, nil
}

// String returns the quoted, qualified name, ready to put in SQL.
func (t Table) String() string {
	if t.Schema == "" {
		return pgx.Identifier{t.Name}.Sanitize()
	}
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// Sibling returns the quoted name of an object created beside the table,
// named after it: the table name, "_" and suffix. A name too long for
// PostgreSQL is shortened and given a hash of the full name, so that it stays
// unique rather than being truncated by the server.
func (t Table) Sibling(suffix string) string {
	name := t.siblingName(suffix)
	if t.Schema == "" {
		return pgx.Identifier{name}.Sanitize()
	}
	return pgx.Identifier{t.Schema, name}.Sanitize()
}

func (t Table) siblingName(suffix string) string {
	name := t.Name + "_" + suffix
	if len(name) <= maxIdentifier {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	tail := fmt.Sprintf("_%x_%s", sum[:4], suffix)
	base := t.Name
	for len(base)+len(tail) > maxIdentifier || !utf8.ValidString(base) {
		base = base[:len(base)-1]
	}
	return base + tail
}

// MigrationsTable returns the quoted name of the table that records applied
// migrations: "<table>_migrations" in the same schema.
func (t Table) MigrationsTable() string { return t.Sibling("migrations") }

// MigrateLockKey returns the pg_advisory_xact_lock key Apply holds while it
// migrates t. It is exported so that an operator can find a stuck migration
// in pg_locks (objid is the key's low 32 bits).
func (t Table) MigrateLockKey() int64 { return t.lockKey("migrate") }

// PruneLockKey returns the advisory lock key held by the one process pruning
// expired sessions from t, so that others skip the work. See MigrateLockKey.
func (t Table) PruneLockKey() int64 { return t.lockKey("prune") }

func (t Table) lockKey(purpose string) int64 {
	sum := sha256.Sum256([]byte("github.com/smartscheduler/session " + purpose + " " + t.String()))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// Migration is one numbered change to the schema.
type Migration struct {
	// Version is the number the file name starts with; migrations apply in
	// increasing order.
	Version int
	// Name is the rest of the file name, without ".sql".
	Name string
	// source is the SQL template; Table.String and Table.Sibling fill it in.
	source *template.Template
}

// SQL returns the statements of m for table t, for review or for applying by
// hand.
func (m Migration) SQL(t Table) string {
	var b strings.Builder
	if err := m.source.Execute(&b, templateData{t}); err != nil {
		// The templates are embedded and checked by the tests; only a
		// broken build reaches this.
		panic(fmt.Sprintf("migrations: render %03d_%s: %v", m.Version, m.Name, err))
	}
	return b.String()
}

// templateData is what the .sql templates see: {{.Table}} is the quoted
// session table and {{.Index "suffix"}} a quoted name for an index beside it.
type templateData struct{ t Table }

func (d templateData) Table() string { return d.t.String() }

// Index returns an unqualified name: PostgreSQL puts an index in its table's
// schema and refuses a qualified name in CREATE INDEX.
func (d templateData) Index(suffix string) string {
	return pgx.Identifier{d.t.siblingName(suffix)}.Sanitize()
}

var all = mustLoad(files)

// All returns every migration this version of the library knows, in order.
func All() []Migration { return slices.Clone(all) }

func mustLoad(fsys fs.FS) []Migration {
	ms, err := load(fsys)
	if err != nil {
		panic("migrations: " + err.Error())
	}
	return ms
}

func load(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, file := range names {
		number, name, ok := strings.Cut(strings.TrimSuffix(path.Base(file), ".sql"), "_")
		version, err := strconv.Atoi(number)
		if !ok || err != nil || version <= 0 || name == "" {
			return nil, fmt.Errorf("file %s is not named NNN_name.sql", file)
		}
		text, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, err
		}
		tmpl, err := template.New(file).Option("missingkey=error").Parse(string(text))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: version, Name: name, source: tmpl})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("two migrations are numbered %d", ms[i].Version)
		}
	}
	return ms, nil
}

// State is whether one migration has been applied.
type State struct {
	Version int
	Name    string
	// Applied reports whether the migration is recorded as applied.
	Applied bool
	// AppliedAt is when it was applied, or the zero time.
	AppliedAt time.Time
	// Unknown reports a migration recorded in the database that this version
	// of the library does not have: the schema is newer than the code.
	Unknown bool
}

// Status lists every migration, applied or pending, in order, followed by any
// recorded in the database that this version of the library does not know.
// It changes nothing; a missing migrations table means nothing is applied.
func Status(ctx context.Context, db DB, t Table) ([]State, error) {
	_, states, err := resolvedStatus(ctx, db, t)
	return states, err
}

// resolvedStatus is Status, returning t resolved too.
func resolvedStatus(ctx context.Context, db DB, t Table) (Table, []State, error) {
	t, err := t.Resolve(ctx, db)
	if err != nil {
		return t, nil, err
	}
	recorded, err := applied(ctx, db, t)
	if err != nil {
		return t, nil, err
	}
	states := make([]State, 0, len(all))
	for _, m := range all {
		s := State{Version: m.Version, Name: m.Name}
		if r, ok := recorded[m.Version]; ok {
			s.Applied, s.AppliedAt = true, r.AppliedAt
			delete(recorded, m.Version)
		}
		states = append(states, s)
	}
	var unknown []State
	for _, r := range recorded {
		unknown = append(unknown, r)
	}
	slices.SortFunc(unknown, func(a, b State) int { return a.Version - b.Version })
	return t, append(states, unknown...), nil
}

// applied returns the recorded migrations, each marked Unknown: Status
// takes out those it knows and reports what is left.
func applied(ctx context.Context, db DB, t Table) (map[int]State, error) {
	var exists bool
	err := db.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.MigrationsTable()).Scan(&exists)
	if err != nil {
		return nil, fmt.Errorf("look for %s: %w", t.MigrationsTable(), err)
	}
	if !exists {
		return map[int]State{}, nil
	}
	rows, err := db.Query(ctx, "SELECT version, name, applied_at FROM "+t.MigrationsTable())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.MigrationsTable(), err)
	}
	recorded := map[int]State{}
	for rows.Next() {
		s := State{Applied: true, Unknown: true}
		if err := rows.Scan(&s.Version, &s.Name, &s.AppliedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read %s: %w", t.MigrationsTable(), err)
		}
		recorded[s.Version] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", t.MigrationsTable(), err)
	}
	return recorded, nil
}

// Apply applies every pending migration to t in order and returns those it
// applied. Each runs in its own transaction holding
// pg_advisory_xact_lock(t.MigrateLockKey()), and is recorded in
// t.MigrationsTable() in that same transaction, so concurrent callers, in
// this process or others, wait for each other and apply each change once. A
// schema that is up to date costs one query and takes no lock. The schema of
// t is created if it does not exist.
func Apply(ctx context.Context, db DB, t Table) ([]Migration, error) {
	t, states, err := resolvedStatus(ctx, db, t)
	if err != nil {
		return nil, err
	}
	pending := slices.ContainsFunc(states, func(s State) bool { return !s.Applied })
	if !pending {
		return nil, nil
	}
	if !states[0].Applied {
		// The first migration creates the table. One that is already
		// there, belonging to express-session or another app, would fail
		// it with a bare "relation already exists": say whose it is and
		// what to set instead.
		sc, err := Check(ctx, db, t)
		if err != nil {
			return nil, err
		}
		if sc.Express || sc.Foreign {
			return nil, sc.Err()
		}
	}
	var done []Migration
	for i, m := range all {
		if states[i].Applied { // Status lists all first, in order
			continue
		}
		ran, err := applyOne(ctx, db, t, m)
		if err != nil {
			return done, fmt.Errorf("apply session migration %03d_%s to %s: %w", m.Version, m.Name, t, explainPrivilege(ctx, db, t, err))
		}
		if ran {
			done = append(done, m)
		}
	}
	return done, nil
}

// applyOne applies m unless another caller already has. The check happens
// under the lock, so the caller that lost the race sees the winner's record.
func applyOne(ctx context.Context, db DB, t Table, m Migration) (ran bool, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			// The transaction already failed; its rollback error adds
			// nothing.
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", t.MigrateLockKey()); err != nil {
		return false, err
	}
	if err := ensureSchema(ctx, tx, t); err != nil {
		return false, err
	}
	// Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can
	// still fail with a unique violation in the catalog.
	if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+t.MigrationsTable()+` (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return false, err
	}
	var done bool
	err = tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t.MigrationsTable()+" WHERE version = $1)", m.Version).Scan(&done)
	if err != nil {
		return false, err
	}
	if !done {
		// No arguments: pgx sends the file with the simple protocol, which
		// allows several statements.
		if _, err := tx.Exec(ctx, m.SQL(t)); err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+t.MigrationsTable()+" (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			return false, err
		}
	}
	return !done, tx.Commit(ctx)
}

// ensureSchema creates the schema of t if it is missing. It checks first
// because CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
// database even when the schema exists.
func ensureSchema(ctx context.Context, tx pgx.Tx, t Table) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", t.Schema).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{t.Schema}.Sanitize())
	if err != nil {
		return fmt.Errorf("schema %q does not exist and could not be created (create it, or name an existing schema in the table name): %w", t.Schema, err)
	}
	return nil
}
