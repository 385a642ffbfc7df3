// Package redact keeps database passwords out of messages, for the session
// package and sessionctl alike.
package redact

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// DatabaseURL returns host, port and database of a connection string for
// messages, never the user's password: "db.example.com:5432/app".
func DatabaseURL(databaseURL string) string {
	cfg, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		if u, uerr := url.Parse(databaseURL); uerr == nil && u.Host != "" {
			return u.Host + u.Path
		}
		return "(unparsable DATABASE_URL)"
	}
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

var (
	urlUserInfo = regexp.MustCompile(`://([^@/?#]*)@`)
	kvPassword  = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]*)`)
)

// Password removes from msg the connection string databaseURL and every
// form of its password (plain, percent-encoded, quoted), for messages that
// must show a database error without leaking the credentials pgx or
// net/url may have quoted in it.
func Password(msg, databaseURL string) string {
	secrets := []string{databaseURL}
	if m := urlUserInfo.FindStringSubmatch(databaseURL); m != nil {
		if _, pw, ok := strings.Cut(m[1], ":"); ok {
			secrets = append(secrets, pw)
			if dec, err := url.PathUnescape(pw); err == nil {
				secrets = append(secrets, dec)
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(databaseURL, -1) {
		pw := strings.Trim(m[1], "'")
		secrets = append(secrets, m[1], pw)
		if dec, err := url.QueryUnescape(pw); err == nil {
			secrets = append(secrets, dec)
		}
	}
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}
