// Command basic is the smallest useful app on the session library: a visit
// counter and a sign-in/sign-out form, on the in-memory store unless the
// environment says otherwise (USE_POSTGRES=true, DATABASE_URL, ...).
//
//	go run ./examples/basic
package main

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log"
	"net/http"
	"os"

	"github.com/smartscheduler/session"
)

func main() {
	cfg, err := session.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := session.New(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer sessions.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		visits, err := session.Update(s, "visits", func(n int, _ bool) (int, error) { return n + 1, nil })
		if err != nil {
			http.Error(w, "session unavailable", http.StatusServiceUnavailable)
			return
		}
		name, err := session.Value[string](s, "name")
		signedIn := err == nil
		// Flashes are read, and so removed, before the page is written:
		// once the response has started their removal could not be saved.
		flashes, err := s.Flashes()
		if err != nil {
			http.Error(w, "session unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "<!doctype html><title>session demo</title><p>Visits: %d</p>", visits)
		for _, f := range flashes {
			fmt.Fprintf(w, "<p><em>%s</em></p>", html.EscapeString(f))
		}
		if signedIn {
			fmt.Fprintf(w, `<p>Signed in as %s.</p><form method="post" action="/logout"><button>Sign out</button></form>`, html.EscapeString(name))
		} else {
			fmt.Fprint(w, `<form method="post" action="/login"><input name="name" placeholder="your name" required> <button>Sign in</button></form>`)
		}
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		name := r.FormValue("name")
		// A new token at sign-in defeats session fixation.
		if err := errors.Join(s.Renew(), s.Set("name", name), s.SetUser(name), s.AddFlash("Welcome, "+name+"!")); err != nil {
			http.Error(w, "could not sign in", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if err := errors.Join(s.Destroy(), s.AddFlash("Signed out.")); err != nil {
			http.Error(w, "could not sign out", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})

	addr := "127.0.0.1:8080"
	if port := os.Getenv("PORT"); port != "" {
		addr = ":" + port
	}
	log.Printf("listening on http://%s", addr)
	log.Fatal(http.ListenAndServe(addr, http.NewCrossOriginProtection().Handler(sessions.Handler(mux))))
}
