package session_test

import (
	"context"
	"fmt"
	"io"
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
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// The README's quick start: a visit counter on the development defaults.
func Example() {
	sessions, err := session.New(context.Background(), session.Config{Secret: "example-secret-example-secret-example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sessions.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		visits, _ := session.Update(s, "visits", func(n int, _ bool) (int, error) { return n + 1, nil })
		fmt.Fprintf(w, "visit %d", visits)
	})
	server := httptest.NewServer(sessions.Handler(mux))
	defer server.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	fmt.Println(get(browser, server.URL))
	fmt.Println(get(browser, server.URL))
	// Output:
	// visit 1
	// visit 2
}

// Sign-in renews the token and links the session to its user; sign-out
// destroys it; a flash message survives the redirect.
func ExampleSession_Renew() {
	sessions, _ := session.New(context.Background(), session.Config{Secret: "example-secret-example-secret-example"})
	defer sessions.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if err := s.Renew(); err != nil { // against session fixation
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		s.SetUser("ada")
		s.Set("name", "Ada")
		s.AddFlash("Welcome back!")
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		session.FromContext(r.Context()).Destroy()
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		name, ok := session.Value[string](s, "name")
		if !ok {
			name = "stranger"
		}
		fmt.Fprintf(w, "hello %s %v", name, s.Flashes())
	})
	server := httptest.NewServer(sessions.Handler(mux))
	defer server.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	post := func(path string) string {
		resp, err := browser.Post(server.URL+path, "text/plain", nil)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
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

// Reading configuration from the environment reports every problem at once.
func ExampleConfigFromLookup() {
	env := map[string]string{"NODE_ENV": "production", "SESSION_SECRET": "changeme"}
	_, err := session.ConfigFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	for _, problem := range session.ConfigErrors(err) {
		fmt.Println("-", problem.Variable)
	}
	// Output:
	// - SESSION_SECRET
	// - USE_POSTGRES
}
