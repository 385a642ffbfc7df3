// Package connerr makes PostgreSQL connection errors say what went wrong
// first, once, for the session package and sessionctl alike.
//
// pgx tries every address a host resolves to and, with sslmode=prefer (its
// default), each first with TLS and then without; when all fail it joins
// every attempt's error, one a line. Against a server without TLS, a
// wrong password then reads "server refused TLS connection" before the
// password failure, and a closed port reads the same refusal twice, which
// sends operators after the wrong cause.
package connerr

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// tlsRefused is how pgx reports a server that does not speak TLS.
const tlsRefused = "server refused TLS connection"

// Tidy returns err with the text of the pgconn.ConnectError it holds, if
// any, condensed to its cause: the last attempt's error (the one made
// with the fewest requirements, so the furthest the connection got), then
// "(after the server refused TLS)" when an earlier attempt was refused
// TLS, then any other distinct error. Each line appears once. errors.Is
// and errors.As still see err; without a ConnectError, err is returned as
// it is.
func Tidy(err error) error {
	ce, ok := errors.AsType[*pgconn.ConnectError](err)
	if !ok {
		return err
	}
	full, text := err.Error(), ce.Error()
	tidy := strings.Replace(full, text, condense(ce), 1)
	if tidy == full {
		return err
	}
	return &tidyError{msg: tidy, err: err}
}

// condense is the text of ce, tidied.
func condense(ce *pgconn.ConnectError) string {
	// "failed to connect to `user=app database=app`:", then the attempts.
	prefix, rest, _ := strings.Cut(ce.Error(), "`:")
	prefix += "`"
	var attempts []string
	refused := false
	for line := range strings.SplitSeq(rest, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasSuffix(line, tlsRefused):
			refused = true
		default:
			attempts = addDistinct(attempts, line)
		}
	}
	if len(attempts) == 0 {
		// Every attempt wanted TLS (sslmode=require or stricter).
		return prefix + ": " + tlsRefused + ": the server does not offer TLS; enable ssl on it, or set sslmode in DATABASE_URL to what it supports"
	}
	last := attempts[len(attempts)-1]
	text := prefix + ": " + last
	if refused {
		text += " (after the server refused TLS)"
	}
	if earlier := attempts[:len(attempts)-1]; len(earlier) > 0 {
		text += "; earlier attempts: " + strings.Join(earlier, "; ")
	}
	return text
}

// addDistinct adds line to lines unless it says what one of them says: the
// same text, or one ending with the other ("hostname resolving error:
// lookup db: no such host" and "lookup db: no such host"), of which the
// longer is kept.
func addDistinct(lines []string, line string) []string {
	for i, l := range lines {
		switch {
		case strings.HasSuffix(l, line):
			return lines
		case strings.HasSuffix(line, l):
			lines[i] = line
			return lines
		}
	}
	return append(lines, line)
}

// Fix returns what to check for the connection error err, by its cause.
func Fix(err error) string {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pgErr.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return "check the user name and password in DATABASE_URL (special characters percent-encoded), and that the server's pg_hba.conf lets this host log in as that user"
		case "3D000": // invalid_catalog_name
			return "create the database, or fix the database name at the end of DATABASE_URL"
		case "53300": // too_many_connections
			return "the server has no connection to spare: lower the pools of other clients, or raise max_connections"
		}
	}
	if ce, ok := errors.AsType[*pgconn.ConnectError](err); ok && strings.Contains(ce.Error(), "hostname resolving error") {
		return "check the host name in DATABASE_URL: it does not resolve from this machine"
	}
	return "check the host and port in DATABASE_URL, that the server is up, and that this host may reach it (firewall, listen_addresses)"
}

// tidyError is err with a tidier text.
type tidyError struct {
	msg string
	err error
}

func (e *tidyError) Error() string { return e.msg }
func (e *tidyError) Unwrap() error { return e.err }
