package migrations

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// insufficientPrivilege is PostgreSQL's SQLSTATE for "permission denied"
// and "must be owner of".
const insufficientPrivilege = "42501"

// CheckPrivileges reports whether the connected role may apply the pending
// migrations of t, without trying: it needs CREATE on the database when
// t's schema does not exist, CREATE on the schema while the session table
// or its migrations table does not, and ownership of the session table to
// alter it. The error names the privilege the role lacks and the two ways
// out: grant it, or migrate as a role that has it (sessionctl migrate) with
// SESSION_AUTO_MIGRATE=false for the application. It returns nil when the
// role has what it needs.
func CheckPrivileges(ctx context.Context, db DB, t Table) error {
	t, err := t.Resolve(ctx, db)
	if err != nil {
		return err
	}
	var (
		role, database                          string
		schemaExists, tableExists, recordsExist bool
		createOnDatabase, createOnSchema, owner bool
	)
	err = db.QueryRow(ctx, `SELECT current_user, current_database(),
	n.oid IS NOT NULL, to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL,
	has_database_privilege(current_database(), 'CREATE'),
	n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'CREATE'),
	COALESCE((SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass($2)), true)
FROM (SELECT $1::text AS name) s LEFT JOIN pg_namespace n ON n.nspname = s.name`,
		t.Schema, t.String(), t.MigrationsTable()).Scan(&role, &database, &schemaExists, &tableExists, &recordsExist, &createOnDatabase, &createOnSchema, &owner)
	if err != nil {
		return fmt.Errorf("check the privileges of the database role: %w", err)
	}
	quote := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	const migrate = `or run "sessionctl migrate" as a role that may, and set SESSION_AUTO_MIGRATE=false for the application`
	switch {
	case !schemaExists && !createOnDatabase:
		return fmt.Errorf("role %s lacks the CREATE privilege on database %s, which creating schema %s for the session table needs: create the schema (CREATE SCHEMA %s AUTHORIZATION %s) or grant the privilege (GRANT CREATE ON DATABASE %s TO %s) as its owner, %s",
			quote(role), quote(database), quote(t.Schema), quote(t.Schema), quote(role), quote(database), quote(role), migrate)
	case schemaExists && (!tableExists || !recordsExist) && !createOnSchema:
		return fmt.Errorf("role %s lacks the CREATE privilege on schema %s, which creating the session table needs: grant it (GRANT CREATE ON SCHEMA %s TO %s) as the schema's owner, %s",
			quote(role), quote(t.Schema), quote(t.Schema), quote(role), migrate)
	case tableExists && !owner:
		return fmt.Errorf("role %s does not own the session table %s, which upgrading it needs: run \"sessionctl migrate\" as its owner and set SESSION_AUTO_MIGRATE=false for the application, or make the role its owner (ALTER TABLE %s OWNER TO %s)",
			quote(role), t, t, quote(role))
	}
	return nil
}

// explainPrivilege turns err, when PostgreSQL refused a migration for want
// of a privilege, into CheckPrivileges' explanation followed by
// PostgreSQL's own words; other errors it returns as they are.
func explainPrivilege(ctx context.Context, db DB, t Table, err error) error {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	if !ok || pgErr.Code != insufficientPrivilege {
		return err
	}
	why := CheckPrivileges(ctx, db, t)
	if why == nil {
		return err // a privilege this check does not know of
	}
	return &privilegeError{msg: fmt.Sprintf("%s (SQLSTATE %s: %s)", why, pgErr.Code, strings.TrimSuffix(pgErr.Message, ".")), err: err}
}

// privilegeError is a migration PostgreSQL refused for want of a
// privilege: msg explains it and quotes PostgreSQL, err is the refusal,
// for errors.As.
type privilegeError struct {
	msg string
	err error
}

func (e *privilegeError) Error() string { return e.msg }
func (e *privilegeError) Unwrap() error { return e.err }
