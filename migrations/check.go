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
	// Express reports that the table has connect-pg-simple's layout (sid,
	// sess, expire): express-session's sessions, which the library can
	// import (SESSION_EXPRESS_TABLE) but never use as its own table.
	Express bool
	// Foreign reports a table that holds neither this library's id nor its
	// data column: another application's (Express included).
	Foreign bool
	// Columns lists the table's columns as "name type", in table order, so
	// that a message about a table of the wrong kind can say what it found.
	Columns []string

	// configured is the table as the operator named it (SESSION_TABLE's
	// text), for a message that suggests a setting.
	configured string
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
	configured := t.Name
	if t.Schema != "" {
		configured = t.Schema + "." + t.Name
	}
	t, err := t.Resolve(ctx, db)
	if err != nil {
		return Schema{}, err
	}
	sc := Schema{Table: t.String(), Latest: all[len(all)-1].Version, configured: configured}
	rows, err := db.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, t.String())
	if err != nil {
		return sc, fmt.Errorf("inspect %s: %w", t, err)
	}
	found := map[string]string{}
	var order []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return sc, fmt.Errorf("inspect %s: %w", t, err)
		}
		found[name] = typ
		order = append(order, name+" "+typ)
	}
	if err := rows.Err(); err != nil {
		return sc, fmt.Errorf("inspect %s: %w", t, err)
	}
	sc.Exists = len(found) > 0
	if !sc.Exists {
		return sc, nil
	}
	sc.Columns = order
	sc.Express = isExpress(found)
	_, id := found["id"]
	_, data := found["data"]
	sc.Foreign = !id || !data
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

// isExpress reports whether columns (name to type) are connect-pg-simple's:
// its table.sql makes sid varchar, sess json and expire timestamp(6), and
// hand-made variants use text, jsonb or a time zone.
func isExpress(columns map[string]string) bool {
	sid, sess, expire := columns["sid"], columns["sess"], columns["expire"]
	return (sid == "text" || strings.HasPrefix(sid, "character varying")) &&
		(sess == "json" || sess == "jsonb" || sess == "text") &&
		strings.HasPrefix(expire, "timestamp")
}

// Err returns nil if the schema is ready for the store, or an error saying
// what is wrong and how to fix it, in the environment variables an operator
// sets.
func (sc Schema) Err() error {
	const fix = `run "sessionctl migrate" (or set SESSION_AUTO_MIGRATE=true)`
	switch {
	case sc.Express:
		// The default table name is express-session's too: this is what
		// anyone moving from it meets first.
		return fmt.Errorf("session table %s is express-session's (connect-pg-simple's table: sid, sess, expire), not this library's, which cannot share it: "+
			"set SESSION_TABLE to a free name (such as go_session) for this library's table, and SESSION_EXPRESS_TABLE=%s to keep express-session's users signed in as they move over (see docs/migrating-from-express.md)",
			sc.Table, sc.configured)
	case sc.Foreign:
		return fmt.Errorf("session table %s belongs to something else: it has the columns %s, none of them this library's id and data: "+
			"set SESSION_TABLE to a free name for this library's table, and leave that one to whatever uses it (drop it only if nothing does)",
			sc.Table, strings.Join(sc.Columns, ", "))
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
