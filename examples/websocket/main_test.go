package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/smartscheduler/session"
)

// TestCounterSurvivesReconnect dials the endpoint twice with one cookie
// jar, as a browser reconnecting would: the first handshake sets the
// session cookie, and the second connection carries on the first one's
// count, which lives in the session.
func TestCounterSurvivesReconnect(t *testing.T) {
	sessions, err := session.New(t.Context(), session.Config{Secret: "websocket-example-test-secret-0123456789"}, session.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sessions.Close)
	server := httptest.NewServer(newMux(sessions, slog.New(slog.DiscardHandler)))
	t.Cleanup(server.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Jar: jar}
	wsURL := "ws" + server.URL[len("http"):] + "/counter"

	exchange := func(messages ...string) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.CloseNow()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake status %d", resp.StatusCode)
		}
		var replies []string
		for _, m := range messages {
			if err := conn.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				t.Fatal(err)
			}
			_, reply, err := conn.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			replies = append(replies, string(reply))
		}
		conn.Close(websocket.StatusNormalClosure, "")
		return replies
	}

	if got := exchange("a", "b"); len(got) != 2 || got[0] != "a #1" || got[1] != "b #2" {
		t.Fatalf("first connection replies = %q; want a #1, b #2", got)
	}
	u, _ := url.Parse(server.URL)
	if len(jar.Cookies(u)) != 1 {
		t.Fatalf("the handshake set %d cookies; want the session cookie", len(jar.Cookies(u)))
	}
	if got := exchange("c"); len(got) != 1 || got[0] != "c #3" {
		t.Errorf("after reconnecting, replies = %q; want c #3: the count lives in the session", got)
	}
}
