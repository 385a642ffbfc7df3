// Package session is HTTP session middleware for net/http, backed by
// PostgreSQL in production and by memory in development.
//
// Quick start:
//
//	cfg, err := session.ConfigFromEnv() // NODE_ENV, USE_POSTGRES, DATABASE_URL, SESSION_SECRET, SESSION_*
//	if err != nil { log.Fatal(err) }    // every problem listed, each with its fix
//	sessions, err := session.New(ctx, cfg)
//	if err != nil { log.Fatal(err) }
//	defer sessions.Close()
//	http.ListenAndServe(":8080", sessions.Handler(mux))
//
// Inside a handler, session.FromContext(r.Context()) returns the request's
// Session: Set and Get JSON values, read them typed with Value[T], change
// one atomically with Update[T], Renew the token at sign-in, Destroy at
// sign-out, and SetUser so Manager.RevokeUser can sign a user out
// everywhere.
//
// What the library guarantees:
//
//   - A request that never touches its session costs no store call; a
//     session read but not changed is not written.
//   - Concurrent requests that change different keys of one session lose
//     nothing: a save sends only the request's own changes, which the store
//     applies atomically to the session as it is at that moment.
//   - A destroyed or renewed session is never brought back by a request
//     that was in flight; that request's response clears the cookie, or
//     starts a new, empty session if it wrote.
//   - The session is saved and its cookie set before the response headers
//     leave, so a redirect after sign-in never races the save.
//   - A tampered, expired or otherwise unverifiable cookie is a new session,
//     never an error; a store outage is a 503, and service resumes by itself.
//   - Secrets rotate without logging anyone out (Config.PreviousSecrets).
package session
