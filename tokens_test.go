package session_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/smartscheduler/session"
)

// Tests for header tokens (issue 16): API, mobile and command-line clients
// without a cookie jar carry the session's token in a header.

// apiClient is a client with no cookie jar, which remembers the token the
// server gives it in header, as an API client would.
type apiClient struct {
	t      *testing.T
	base   string
	header string // the token header; Authorization means Bearer
	token  string // as the server last gave it, with its scheme
	// cookies counts the responses that set a cookie, which a client with
	// no jar ignores.
	cookies int
}

// do sends a GET to path carrying the token, and keeps any token the
// response gives; it returns the response and its body.
func (c *apiClient) do(path string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set(c.header, c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if len(resp.Header.Values("Set-Cookie")) != 0 {
		c.cookies++
	}
	if values, ok := resp.Header[http.CanonicalHeaderKey(c.header)]; ok {
		c.token = values[0]
	}
	return resp, string(body)
}

// TestHeaderTokens runs a client with no cookie jar through a session's
// whole life in each header style: it gets its token in the header, keeps
// its session, has the token renewed at sign-in, ended at logout and by a
// revocation, and never gets a cookie or a header when nothing changed.
func TestHeaderTokens(t *testing.T) {
	t.Parallel()
	for _, header := range []string{"Authorization", "X-Session-Token"} {
		t.Run(header, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, serverSetup{cfg: session.Config{TokenSource: "header", TokenHeader: header, Production: true, AllowMemoryStore: true}}, appHandler())
			c := &apiClient{t: t, base: ts.URL, header: header}
			resp, _ := c.do("/set?color=blue")
			if c.token == "" {
				t.Fatalf("a new session's response carries no %s", header)
			}
			if header == "Authorization" && !strings.HasPrefix(c.token, "Bearer ") {
				t.Errorf("Authorization = %q; want the Bearer scheme", c.token)
			}
			if vary := resp.Header.Values("Vary"); !containsFold(vary, header) || containsFold(vary, "Cookie") {
				t.Errorf("Vary = %q; want %s and not Cookie", vary, header)
			}
			first := c.token
			resp, body := c.do("/get?key=color")
			if body != "blue" {
				t.Errorf("with its token the client reads color = %q", body)
			}
			if _, sent := resp.Header[http.CanonicalHeaderKey(header)]; sent {
				t.Errorf("a read that changed nothing sent %s", header)
			}

			c.do("/login?user=ada")
			if c.token == first || c.token == "" {
				t.Fatalf("sign-in gave the token %q; want a new one", c.token)
			}
			if _, who := c.do("/whoami"); who != "ada" {
				t.Errorf("after sign-in the token is signed in as %q", who)
			}
			stale := &apiClient{t: t, base: ts.URL, header: header, token: first}
			if _, who := stale.do("/whoami"); who != "" {
				t.Errorf("the token from before sign-in is signed in as %q", who)
			}

			c.do("/destroy")
			if c.token != "" {
				t.Errorf("logout left the client the token %q; want an empty header telling it to drop it", c.token)
			}

			c.token = ""
			c.do("/login?user=grace")
			if _, err := ts.manager.RevokeUser(t.Context(), "grace"); err != nil {
				t.Fatal(err)
			}
			if _, who := c.do("/whoami"); who != "" || c.token != "" {
				t.Errorf("after RevokeUser: %q, token %q; want signed out and told to drop the token", who, c.token)
			}

			// A token in the query string is never accepted.
			c.token = ""
			c.do("/set?x=1")
			query := &apiClient{t: t, base: ts.URL, header: header}
			if _, body := query.do("/get?key=x&token=" + strings.TrimPrefix(c.token, "Bearer ")); body != "" {
				t.Errorf("a token in the query string was accepted: x = %q", body)
			}
			if c.cookies+stale.cookies+query.cookies != 0 {
				t.Errorf("%d responses in header mode set a cookie", c.cookies+stale.cookies+query.cookies)
			}
		})
	}
}

func containsFold(values []string, want string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), want) {
				return true
			}
		}
	}
	return false
}

// TestBothTokenSources: one Manager serves browsers with cookies and API
// clients with headers; each is answered in its own channel, a new session
// in both, and a request carrying both uses the header.
func TestBothTokenSources(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverSetup{cfg: session.Config{TokenSource: "both", TokenHeader: "X-Session-Token"}}, appHandler())
	browser := ts.client(t)
	resp, _ := fetchOK(t, browser, ts.URL+"/set?who=browser")
	if setCookie(resp, "session") == nil || resp.Header.Get("X-Session-Token") == "" {
		t.Errorf("a new session's response: Set-Cookie %q, X-Session-Token %q; want both", resp.Header.Values("Set-Cookie"), resp.Header.Get("X-Session-Token"))
	}
	resp, _ = fetchOK(t, browser, ts.URL+"/login?user=ada")
	if setCookie(resp, "session") == nil || resp.Header.Get("X-Session-Token") != "" {
		t.Errorf("a cookie client's renewal: Set-Cookie %q, X-Session-Token %q; want the cookie only", resp.Header.Values("Set-Cookie"), resp.Header.Get("X-Session-Token"))
	}

	api := &apiClient{t: t, base: ts.URL, header: "X-Session-Token"}
	api.do("/set?who=api")
	api.do("/login?user=grace")
	if api.token == "" || api.cookies != 1 {
		t.Fatalf("the API client got the token %q and %d cookies; want a token, and a cookie only with its new session", api.token, api.cookies)
	}

	// The browser's cookie and the API client's token together: the
	// header wins.
	req, err := http.NewRequest("GET", ts.URL+"/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Session-Token", api.token)
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "grace" {
		t.Errorf("a request with both a cookie (ada) and a header (grace) is %q; want the header's grace", body)
	}
}
