// Package defaults holds the configuration defaults that the session
// package and sessionctl must agree on, so that sessionctl describes the
// cookie and table an app will really use.
package defaults

import (
	"strings"

	"github.com/smartscheduler/session/migrations"
)

// Table is the default PostgreSQL session table.
const Table = migrations.DefaultTable

// The cookie name prefixes browsers enforce, spelled as browsers write
// them. A __Secure- cookie must be Secure; a __Host- cookie must be Secure,
// have Path=/ and no Domain, so no other host, not even a sibling
// subdomain, can set or shadow it.
const (
	HostPrefix   = "__Host-"
	SecurePrefix = "__Secure-"
)

// CookiePrefix returns the prefix name starts with, spelled as browsers
// write it, and the rest of name; prefix is "" when there is none.
// Browsers match prefixes without regard to case, so "__HOST-sid" carries
// the __Host- prefix and its rules.
func CookiePrefix(name string) (prefix, rest string) {
	for _, p := range []string{HostPrefix, SecurePrefix} {
		if len(name) >= len(p) && strings.EqualFold(name[:len(p)], p) {
			return p, name[len(p):]
		}
	}
	return "", name
}

// CookieName returns the name the session cookie is sent under: name, or
// "session" when it is empty. In production it always carries a prefix
// browsers enforce: a name without one gets __Host- when no domain is set
// and __Secure- with a domain (where __Host- is not allowed), and a prefix
// written in another case is written as browsers spell it, so that every
// browser, old ones included, applies its rules.
func CookieName(production bool, name, domain string) string {
	if name == "" {
		name = "session"
	}
	if !production {
		return name
	}
	switch prefix, rest := CookiePrefix(name); {
	case prefix != "":
		return prefix + rest
	case domain == "":
		return HostPrefix + name
	default:
		return SecurePrefix + name
	}
}

// CookieDomain returns domain as browsers read a cookie's Domain
// attribute: in lower case and without one leading dot, which they
// ignore (and net/http drops).
func CookieDomain(domain string) string {
	return strings.TrimPrefix(strings.ToLower(domain), ".")
}
