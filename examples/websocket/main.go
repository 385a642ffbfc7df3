// Command websocket shows the session library where Manager.Handler cannot
// serve: a WebSocket handshake. The handshake's 101 response is the only
// response such a connection gets, and Handler's Hijack path cannot put a
// cookie on it. Manager.Begin attaches the session to the request,
// Manager.Save stores it and puts its cookie in the handshake's headers, and
// the upgrader (github.com/coder/websocket) sends them with the 101.
//
// Each connection is a counter that lives in the session: every message
// the client sends increments it with session.Update, so a reconnect from
// the same browser carries on where it stopped.
//
//	go run ./examples/websocket
//
// Then open http://127.0.0.1:8080 in a browser.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/coder/websocket"

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
	addr := "127.0.0.1:8080"
	if port := os.Getenv("PORT"); port != "" {
		addr = ":" + port
	}
	log.Printf("listening on http://%s", addr)
	server := &http.Server{Addr: addr, Handler: newMux(sessions, slog.Default()), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(server.ListenAndServe())
}

// newMux serves the page and the WebSocket endpoint.
func newMux(sessions *session.Manager, logger *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	})
	mux.HandleFunc("GET /counter", func(w http.ResponseWriter, r *http.Request) {
		r = sessions.Begin(r)
		s := session.FromContext(r.Context())
		// The handshake is the last chance to set the cookie: make sure the
		// browser holds a session before upgrading.
		if _, err := session.Update(s, "connections", func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
			session.DefaultErrorHandler(w, r, err)
			return
		}
		if err := sessions.Save(w, r); err != nil {
			session.DefaultErrorHandler(w, r, err)
			return
		}
		conn, err := websocket.Accept(w, r, nil) // sends w.Header(), Set-Cookie included, with the 101
		if err != nil {
			return // Accept has answered the request
		}
		defer conn.CloseNow()
		// The connection outlives the request's context as far as the
		// session is concerned: each message is one store call of its own.
		ctx := r.Context()
		for {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				if websocket.CloseStatus(err) == -1 && !errors.Is(err, context.Canceled) {
					logger.Debug("websocket read", "error", err)
				}
				return
			}
			n, err := session.Update(s, "count", func(n int, _ bool) (int, error) { return n + 1, nil })
			if err != nil {
				conn.Close(websocket.StatusTryAgainLater, "session store unavailable")
				return
			}
			if err := conn.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "%s #%d", msg, n)); err != nil {
				return
			}
		}
	})
	return mux
}

const page = `<!doctype html><title>session over a WebSocket</title>
<p>Each message you send increments a counter kept in your session. Reload: it carries on.</p>
<form id=f><input id=m value=hello> <button>Send</button></form><ul id=log></ul>
<script>
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/counter");
ws.onmessage = e => { const li = document.createElement("li"); li.textContent = e.data; log.prepend(li); };
f.onsubmit = e => { e.preventDefault(); ws.send(m.value); };
</script>`
