package session_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"

	"github.com/smartscheduler/session"
)

// get fetches url with client and returns the body.
func get(client *http.Client, url string) string {
	resp, err := client.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	return string(body)
}

// newBrowser returns a client with a cookie jar of its own.
func newBrowser() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

// The README's quick start: a visit counter on the development defaults.
// An error from the session is the store failing; the Manager's error
// handler answers it with a 503, so the handler only has to stop.
func Example() {
	sessions, err := session.New(context.Background(), session.Config{Secret: "example-secret-example-secret-example"})
	if err != nil {
		log.Fatal(err)
	}
	defer sessions.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		visits, err := session.Update(s, "visits", func(n int, _ bool) (int, error) { return n + 1, nil })
		if err != nil {
			return // the error handler answers
		}
		fmt.Fprintf(w, "visit %d", visits)
	})
	server := httptest.NewServer(sessions.Handler(mux))
	defer server.Close()

	browser := newBrowser()
	fmt.Println(get(browser, server.URL))
	fmt.Println(get(browser, server.URL))
	// Output:
	// visit 1
	// visit 2
}

// Sign-in renews the token and links the session to its user; sign-out
// destroys it; a flash message survives the redirect.
func ExampleSession_Renew() {
	sessions, err := session.New(context.Background(), session.Config{Secret: "example-secret-example-secret-example"})
	if err != nil {
		log.Fatal(err)
	}
	defer sessions.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		err := errors.Join(
			s.Renew(), // against session fixation
			s.SetUser("ada"),
			s.Set("name", "Ada"),
			s.AddFlash("Welcome back!"),
		)
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Destroy(); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		name, err := session.Value[string](s, "name")
		if errors.Is(err, session.ErrNoValue) {
			name, err = "stranger", nil
		}
		flashes, flashErr := s.Flashes() // before the response is written
		if err := errors.Join(err, flashErr); err != nil {
			return // the error handler answers
		}
		fmt.Fprintf(w, "hello %s %v", name, flashes)
	})
	server := httptest.NewServer(sessions.Handler(mux))
	defer server.Close()

	browser := newBrowser()
	post := func(path string) string {
		resp, err := browser.Post(server.URL+path, "text/plain", nil)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err.Error()
		}
		return string(body)
	}
	fmt.Println(post("/login"))
	fmt.Println(get(browser, server.URL))
	fmt.Println(post("/logout"))
	// Output:
	// hello Ada [Welcome back!]
	// hello Ada []
	// hello stranger []
}

// Code that cannot wrap its handlers with Manager.Handler attaches the
// session with Begin and saves it with Save before the response's headers
// are written: here, a handler that answers through a framework's own
// writer, which only takes a status and a body.
func ExampleManager_Begin() {
	sessions, err := session.New(context.Background(), session.Config{Secret: "example-secret-example-secret-example"})
	if err != nil {
		log.Fatal(err)
	}
	defer sessions.Close()

	// reply is all the framework lets a handler do.
	type reply func(status int, body string)
	route := func(r *http.Request, send reply) {
		s := session.FromContext(r.Context())
		n, err := session.Update(s, "n", func(n int, _ bool) (int, error) { return n + 1, nil })
		if err != nil {
			send(http.StatusServiceUnavailable, "try again")
			return
		}
		send(http.StatusOK, fmt.Sprintf("request %d", n))
	}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = sessions.Begin(r)
		route(r, func(status int, body string) {
			if err := sessions.Save(w, r); err != nil {
				session.DefaultErrorHandler(w, r, err)
				return
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
		})
	}))
	defer server.Close()

	browser := newBrowser()
	fmt.Println(get(browser, server.URL))
	fmt.Println(get(browser, server.URL))
	// Output:
	// request 1
	// request 2
}

// Reading configuration from the environment reports every problem at
// once, each naming its variable and the fix.
func ExampleConfigFromLookup() {
	env := map[string]string{"NODE_ENV": "production", "SESSION_SECRET": "changeme"}
	_, err := session.ConfigFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	var problems interface{ Unwrap() []error }
	if errors.As(err, &problems) {
		for _, p := range problems.Unwrap() {
			var ce *session.ConfigError
			if errors.As(p, &ce) {
				fmt.Println("-", ce.Variable)
			}
		}
	}
	// Output:
	// - SESSION_SECRET
	// - USE_POSTGRES
}
