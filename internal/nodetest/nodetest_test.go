package nodetest

import (
	"encoding/json"
	"net/http"
	"testing"
)

// The app needs no database until a request touches the store: reading a
// new session does not, so these tests run without PostgreSQL.
var offlineEnv = map[string]string{
	"DATABASE_URL":   "postgres://nobody@127.0.0.1:1/none",
	"SESSION_SECRET": "keyboard cat",
}

func TestStartExpressApp(t *testing.T) {
	var url string
	t.Run("running", func(t *testing.T) {
		app := StartExpressApp(t, offlineEnv)
		url = app.URL()
		resp, err := http.Get(url + "/state")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var state struct {
			SID     string         `json:"sid"`
			Session map[string]any `json:"session"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&state); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /state: %s, %v", resp.Status, err)
		}
		if len(state.SID) != 32 || state.Session["cookie"] == nil {
			t.Errorf("GET /state = %+v; want a new express session", state)
		}
	})
	if url == "" {
		return
	}
	// The subtest's cleanup has killed the app.
	if resp, err := http.Get(url + "/state"); err == nil {
		resp.Body.Close()
		t.Errorf("the app still answers at %s after its test ended", url)
	}
}

func TestStartExpressAppEnv(t *testing.T) {
	app := StartExpressApp(t, map[string]string{
		"DATABASE_URL":   offlineEnv["DATABASE_URL"],
		"SESSION_SECRET": "keyboard cat",
		"COOKIE_NAME":    "legacy.sid",
	})
	// /visit changes the session, so express sets its cookie (before the
	// store, here unreachable, is asked to save it).
	resp, err := http.Get(app.URL() + "/visit")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var names []string
	for _, c := range resp.Cookies() {
		names = append(names, c.Name)
	}
	if len(names) != 1 || names[0] != "legacy.sid" {
		t.Errorf("GET /visit set cookies %v, want only legacy.sid (COOKIE_NAME)", names)
	}
}
