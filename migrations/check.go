package migrations

import (
	"context"
	"fmt"
	"strings"
)

// Schema is what Check found of a session table.
type Schema struct {
	// Table is the quoted, qualified session table.
	Table string
	// Exists reports whether the table exists.
	Exists bool
	// Problems lists each expected column that is missing or has another
	// type, as "column: problem".
	Problems []string
	// Applied is the highest migration recorded as applied, 0 for none.
	Applied int
	// Latest is the highest migration this version of the library has.
	Latest int
}

// columns is the schema the session store's queries rely on once every
// migration is applied, as format_type spells each type.
var columns = []struct{ name, typ string }{
	{"id", "text"},
	{"data", "jsonb"},
	{"user_id", "text"},
	{"persistent", "boolean"},
	{"created_at", "timestamp with time zone"},
	{"expires_at", "timestamp with time zone"},
	{"idle_expires_at", "timestamp with time zone"},
	{"last_seen", "timestamp with time zone"},
	{"user_agent", "text"},
	{"ip", "text"},
	{"idle_timeout", "interval"},
	{"version", "bigint"}, // unused since 002, but that migration alters it
}

// Check reports whether the session table t exists with the columns the
// store needs, and which migration it is at. It changes nothing. A table
// created by hand from the migrations' SQL, with no migrations table,
// passes if its columns are right.
func Check(ctx context.Context, db DB, t Table) (Schema, error) {
	t, err := t.Resolve(ctx, db)
	if err != nil {
		return Schema{}, err
	}
	sc := Schema{Table: t.String(), Latest: all[len(all)-1].Version}
	rows, err := db.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, t.String())
	if err != nil {
		return sc, fmt.Errorf("inspect %s: %w", t, err)
	}
	found := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return sc, fmt.Errorf("inspect %s: %w", t, err)
		}
		found[name] = typ
	}
	if err := rows.Err(); err != nil {
		return sc, fmt.Errorf("inspect %s: %w", t, err)
	}
	sc.Exists = len(found) > 0
	if !sc.Exists {
		return sc, nil
	}
	for _, c := range columns {
		switch typ, ok := found[c.name]; {
		case !ok:
			sc.Problems = append(sc.Problems, c.name+": missing")
		case typ != c.typ:
			sc.Problems = append(sc.Problems, fmt.Sprintf("%s: type %s, want %s", c.name, typ, c.typ))
		}
	}
	states, err := Status(ctx, db, t)
	if err != nil {
		return sc, err
	}
	for _, st := range states {
		if st.Applied && st.Version > sc.Applied {
			sc.Applied = st.Version
		}
	}
	return sc, nil
}

// Err returns nil if the schema is ready for the store, or an error saying
// what is wrong and how to fix it, in the environment variables an operator
// sets.
func (sc Schema) Err() error {
	const fix = `run "sessionctl migrate" (or set SESSION_AUTO_MIGRATE=true)`
	switch {
	case !sc.Exists:
		return fmt.Errorf("session table %s does not exist: %s", sc.Table, fix)
	case sc.Applied > sc.Latest:
		return fmt.Errorf("session table %s is at migration %d but this version of the library knows only up to %d: upgrade the library", sc.Table, sc.Applied, sc.Latest)
	case sc.Applied > 0 && sc.Applied < sc.Latest:
		return fmt.Errorf("session table %s is at migration %d and needs %d: %s", sc.Table, sc.Applied, sc.Latest, fix)
	case len(sc.Problems) > 0:
		return fmt.Errorf("session table %s does not have the expected columns (%s): it was not created by these migrations; rename it, or set SESSION_TABLE to a free name", sc.Table, strings.Join(sc.Problems, "; "))
	}
	return nil
}
