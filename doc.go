// Package session is HTTP session middleware for net/http.
package session
