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
// Session: Set and read JSON values (Value[T]), change one atomically with
// Update[T], Renew the token at sign-in, Destroy at sign-out, and SetUser so
// Manager.RevokeUser can sign a user out everywhere. Code that cannot wrap
// its handlers (a framework with handlers of its own, a WebSocket
// handshake) uses Manager.Begin and Manager.Save instead of Handler.
//
// # Errors
//
// Every Session method that can fail returns an error, and none fails
// silently:
//
//   - The store could not answer (ErrUnavailable wrapped, or a timeout):
//     every call that needs the session returns the failure, and the
//     Manager's error handler (DefaultErrorHandler: 503 with Retry-After)
//     answers the request in place of the handler's response, unless the
//     handler called Degrade to serve the request without its session.
//   - A value is missing (ErrNoValue) or does not decode into the type asked
//     for: Value and Pop return that error for that key only.
//   - A change would exceed Config.MaxSize (ErrTooLarge), or a value cannot
//     be stored: Set refuses it at once.
//   - The response's headers have left (ErrCommitted): a change, or Flashes,
//     could no longer be saved.
//   - Misuse is a panic naming the fix: FromContext on a request that never
//     passed through Manager.Handler or Manager.Begin.
//
// Err reports the store's failure without changing anything.
//
// # Guarantees
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
//
// # Stores
//
// A Store keeps sessions; store.go documents the contract, and package
// storetest checks an implementation against it. NewPostgresStore,
// NewRedisStore and the development memory store implement it, with the
// optional UserIndex and Pruner.
package session
