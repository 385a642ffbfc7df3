// Package defaults holds the configuration defaults that the session
// package and sessionctl must agree on, so that sessionctl describes the
// cookie and table an app will really use.
package defaults

import "github.com/smartscheduler/session/migrations"

// Table is the default PostgreSQL session table.
const Table = migrations.DefaultTable

// CookieName is the default cookie name: "session", with the __Host- prefix
// in production when no cookie domain is set, since browsers then hold the
// cookie to the exact host, over HTTPS, with Path=/.
func CookieName(production bool, domain string) string {
	if production && domain == "" {
		return "__Host-session"
	}
	return "session"
}
