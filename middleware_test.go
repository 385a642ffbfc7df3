package session_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartscheduler/session"
)

// commitTriggers are the ways a handler can send its headers; the session
// must be saved and its cookie set before each.
var commitTriggers = []struct {
	name    string
	trigger func(w http.ResponseWriter, r *http.Request) error
}{
	{"return without writing", func(w http.ResponseWriter, r *http.Request) error { return nil }},
	{"WriteHeader", func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	}},
	{"Write", func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.WriteString(w, "body")
		return err
	}},
	{"Flush before writing", func(w http.ResponseWriter, r *http.Request) error {
		w.(http.Flusher).Flush()
		_, err := io.WriteString(w, "body")
		return err
	}},
	{"ResponseController.Flush", func(w http.ResponseWriter, r *http.Request) error {
		return http.NewResponseController(w).Flush()
	}},
	{"io.Copy through ReadFrom", func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.Copy(w, io.LimitReader(strings.NewReader("body"), 4))
		return err
	}},
	{"redirect", func(w http.ResponseWriter, r *http.Request) error {
		http.Redirect(w, r, "/read", http.StatusSeeOther)
		return nil
	}},
	{"103 Early Hints, then 200", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		_, err := io.WriteString(w, "body")
		return err
	}},
}

func TestCommitBeforeHeaders(t *testing.T) {
	t.Parallel()
	for _, tc := range commitTriggers {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			handlerErr := make(chan error, 1)
			mux := http.NewServeMux()
			mux.Handle("/", appHandler())
			mux.HandleFunc("/act", func(w http.ResponseWriter, r *http.Request) {
				if err := session.FromContext(r.Context()).Set("visits", 41); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				handlerErr <- tc.trigger(w, r)
			})
			ts := startServer(t, serverSetup{}, mux)
			c := ts.client(t)
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

			var (
				mu    sync.Mutex
				early []textproto.MIMEHeader
			)
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, header textproto.MIMEHeader) error {
				mu.Lock()
				defer mu.Unlock()
				early = append(early, header)
				return nil
			}}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", ts.URL+"/act", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err := <-handlerErr; err != nil {
				t.Errorf("trigger failed: %v", err)
			}
			if resp.StatusCode >= 400 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if setCookie(resp, "session") == nil {
				t.Errorf("final response carries no session cookie; headers %v", resp.Header)
			}
			mu.Lock()
			for _, h := range early {
				if len(h.Values("Set-Cookie")) != 0 {
					t.Errorf("informational response carried Set-Cookie %q", h.Values("Set-Cookie"))
				}
			}
			if strings.Contains(tc.name, "103") && (len(early) != 1 || early[0].Get("Link") == "") {
				t.Errorf("informational responses = %v, want one 103 with its Link", early)
			}
			mu.Unlock()
			if _, body := fetchOK(t, c, ts.URL+"/read"); body != "41" {
				t.Errorf("next request read visits = %s, want 41: the save did not land before the response", body)
			}
		})
	}
}

func TestResponseControllerThroughWrapper(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Set("k", 1); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		rc := http.NewResponseController(w)
		err := errors.Join(
			rc.SetReadDeadline(time.Now().Add(time.Minute)),
			rc.SetWriteDeadline(time.Now().Add(time.Minute)),
			rc.EnableFullDuplex(),
		)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "first")
		if err := rc.Flush(); err != nil {
			panic(err) // headers are gone; fail loudly
		}
		io.WriteString(w, " second")
	})
	ts := startServer(t, serverSetup{}, handler)
	resp, body := fetchOK(t, ts.client(t), ts.URL)
	if body != "first second" {
		t.Errorf("body = %q", body)
	}
	if setCookie(resp, "session") == nil {
		t.Error("no session cookie")
	}
}

func TestStoreFailureAfterHandlerWrites(t *testing.T) {
	t.Parallel()
	errDown := fmt.Errorf("timeout: %w", session.ErrUnavailable)
	tests := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request) error // the error of the handler's write, if any
		wantErr bool                                               // the handler's write must fail
	}{
		{"WriteHeader then Write", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			w.WriteHeader(http.StatusCreated)
			_, err := io.WriteString(w, `{"ok":true}`)
			return err
		}, true},
		{"Write", func(w http.ResponseWriter, r *http.Request) error {
			_, err := io.WriteString(w, "body")
			return err
		}, true},
		{"Flush", func(w http.ResponseWriter, r *http.Request) error {
			return http.NewResponseController(w).Flush()
		}, true},
		{"io.Copy", func(w http.ResponseWriter, r *http.Request) error {
			_, err := io.Copy(w, io.LimitReader(strings.NewReader("body"), 4))
			return err
		}, true},
		{"redirect", func(w http.ResponseWriter, r *http.Request) error {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return nil
		}, false},
		{"return", func(w http.ResponseWriter, r *http.Request) error { return nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var serverLog syncBuffer
			writeErr := make(chan error, 1)
			handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := session.FromContext(r.Context()).Set("k", 1); err != nil {
					t.Errorf("Set: %v", err)
				}
				writeErr <- tt.respond(w, r)
			})
			ts := startServer(t, serverSetup{errorLog: log.New(&serverLog, "", 0)}, handler)
			ts.store.failWith(func(method string) error {
				if method == "Insert" {
					return errDown
				}
				return nil
			})
			c := ts.client(t)
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, body := fetch(t, c, ts.URL)
			ts.Close() // waits for the handler, and so for its log lines
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Errorf("status %d, Retry-After %q; want the error handler's 503", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if strings.Contains(body, "ok") || strings.Contains(body, "body") {
				t.Errorf("the handler's output leaked into the error response: %q", body)
			}
			if err := <-writeErr; (err != nil) != tt.wantErr {
				t.Errorf("handler's write error = %v, want an error: %v", err, tt.wantErr)
			}
			if log := serverLog.String(); log != "" {
				t.Errorf("server logged %q; want nothing (no superfluous WriteHeader)", log)
			}
		})
	}
}

func TestHandlerWrappedTwice(t *testing.T) {
	t.Parallel()
	m, err := session.New(context.Background(), session.Config{Secret: randomSecret(t)}, session.WithLogger(discardLogger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	srv := httptest.NewServer(m.Handler(m.Handler(appHandler())))
	t.Cleanup(srv.Close)
	ts := &testServer{Server: srv, manager: m}
	c := ts.client(t)
	resp, _ := fetchOK(t, c, srv.URL+"/visit")
	if n := len(resp.Header.Values("Set-Cookie")); n != 1 {
		t.Errorf("doubly wrapped handler set %d cookies, want 1", n)
	}
	if _, body := fetchOK(t, c, srv.URL+"/visit"); body != "2" {
		t.Errorf("second visit = %s, want 2", body)
	}
}

// TestErrorResponseDropsHandlerHeaders: when the save fails, the error
// handler's 503 must not go out with the headers the handler prepared for
// its own response, or a shared cache could keep the 503 (Cache-Control), a
// browser could save it as a download (Content-Disposition) and a
// redirect's Location would ride along.
func TestErrorResponseDropsHandlerHeaders(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Set("k", 1); err != nil {
			t.Errorf("Set: %v", err)
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.Header().Set("Content-Disposition", `attachment; filename="report.csv"`)
		http.Redirect(w, r, "/report", http.StatusFound)
	})
	ts := startServer(t, serverSetup{}, handler)
	ts.store.failWith(func(string) error { return session.ErrUnavailable })
	c := ts.client(t)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := fetch(t, c, ts.URL)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	for _, name := range []string{"Cache-Control", "Content-Disposition", "Location"} {
		if v := resp.Header.Get(name); v != "" {
			t.Errorf("the error response carries the handler's %s: %q", name, v)
		}
	}
}

// TestErrLetsHandlerDegrade: a handler that calls Session.Degrade and
// answers without its session keeps its own response instead of the error
// handler's 503. (Until issue 10 a call of Err did this as a side effect;
// Err is now a plain question, see TestErrAloneKeepsTheErrorHandler.)
func TestErrLetsHandlerDegrade(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Degrade(); err != nil {
			io.WriteString(w, "degraded")
			return
		}
		io.WriteString(w, "full")
	})
	ts := startServer(t, serverSetup{}, appHandler())
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/visit")
	degrading := httptest.NewServer(ts.manager.Handler(handler))
	t.Cleanup(degrading.Close)
	ts.store.failWith(func(string) error { return session.ErrUnavailable })
	resp, body := fetch(t, c, degrading.URL)
	if resp.StatusCode != http.StatusOK || body != "degraded" {
		t.Errorf("status %d, body %q; want the handler's own 200 degraded page", resp.StatusCode, body)
	}
}

// TestChangeAfterResponseFails: once the response's headers have left, the
// session can no longer be saved, so a change must fail (ErrCommitted)
// rather than vanish.
func TestChangeAfterResponseFails(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	setErr := make(chan error, 1)
	mux.HandleFunc("/late", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "sent")
		setErr <- session.FromContext(r.Context()).Set("late", "value")
	})
	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/visit")
	fetchOK(t, c, ts.URL+"/late")
	err := <-setErr
	_, stored := fetchOK(t, c, ts.URL+"/get?key=late")
	if !errors.Is(err, session.ErrCommitted) {
		t.Errorf("Set after the response was sent = %v; want ErrCommitted", err)
	}
	if stored != "" {
		t.Errorf("a value set after the response was sent was stored: %q", stored)
	}
}

// TestErrAloneKeepsTheErrorHandler: Err reports the store's failure and
// changes nothing: a handler that asks and then answers as if all were
// well still gets the error handler's 503, not its own page.
func TestErrAloneKeepsTheErrorHandler(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Err()
		io.WriteString(w, "signed out page")
	})
	ts := startServer(t, serverSetup{}, appHandler())
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/visit")
	asking := httptest.NewServer(ts.manager.Handler(handler))
	t.Cleanup(asking.Close)
	ts.store.failWith(func(string) error { return session.ErrUnavailable })
	resp, body := fetch(t, c, asking.URL)
	if resp.StatusCode != http.StatusServiceUnavailable || body == "signed out page" {
		t.Errorf("status %d, body %q; want the error handler's 503", resp.StatusCode, body)
	}
}

// TestHijackSavesFirst: a handler that changes its session and then takes
// the connection over (a WebSocket upgrade through Hijack) has its change
// saved before it gets the connection; a failed save refuses the hijack,
// so the handler never writes to a connection whose session was lost.
func TestHijackSavesFirst(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("/", appHandler())
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Set("visits", 7); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return // the error handler has answered
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		buf.Flush()
	})
	ts := startServer(t, serverSetup{}, mux)
	c := ts.client(t)
	fetchOK(t, c, ts.URL+"/read")
	fetchOK(t, c, ts.URL+"/visit") // a stored session, whose cookie the jar holds
	if _, body := fetchOK(t, c, ts.URL+"/hijack"); body != "hijacked" {
		t.Fatalf("hijacked response = %q", body)
	}
	if _, body := fetchOK(t, c, ts.URL+"/read"); body != "7" {
		t.Errorf("visits after the hijack = %s; want 7: the change was not saved before the connection was handed over", body)
	}

	ts.store.failWith(func(string) error { return session.ErrUnavailable })
	resp, body := fetch(t, c, ts.URL+"/hijack")
	if resp.StatusCode != http.StatusServiceUnavailable || body == "hijacked" {
		t.Errorf("hijack after a failed save: status %d, body %q; want the error handler's 503", resp.StatusCode, body)
	}
}

// TestBeginSaveOnAHandshake uses the seam the way a WebSocket upgrade
// does: the handler attaches the session with Begin, signs the user in,
// saves with Save, then writes the 101 response itself on the hijacked
// connection, headers included. The cookie rides on the handshake, which
// Handler's Hijack cannot do, and the next request is signed in.
func TestBeginSaveOnAHandshake(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverSetup{}, appHandler())
	m := ts.manager
	upgrade := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = m.Begin(r)
		s := session.FromContext(r.Context())
		if err := errors.Join(s.Renew(), s.SetUser("ada")); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := m.Save(w, r); err != nil {
			session.DefaultErrorHandler(w, r, err)
			return
		}
		if err := session.FromContext(r.Context()).SetUser("grace"); !errors.Is(err, session.ErrCommitted) {
			t.Errorf("SetUser after Save = %v; want ErrCommitted", err)
		}
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: example\r\nConnection: Upgrade\r\n")
		w.Header().Write(buf)
		buf.WriteString("\r\n")
		buf.Flush()
	}))
	t.Cleanup(upgrade.Close)
	c := ts.client(t)
	req, err := http.NewRequest("GET", upgrade.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "example")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols || setCookie(resp, "session") == nil {
		t.Fatalf("handshake: status %d, Set-Cookie %q; want 101 with the session cookie", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	if _, who := fetchOK(t, c, ts.URL+"/whoami"); who != "ada" {
		t.Errorf("after the handshake the session belongs to %q; want ada", who)
	}
	if err := m.Save(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); err == nil {
		t.Error("Save of a request Begin never saw succeeded")
	}
}

// refusalCounter is an Observer that counts refused tokens.
type refusalCounter struct{ refused atomic.Int64 }

func (o *refusalCounter) StoreCall(context.Context, string) func(error)     { return func(error) {} }
func (o *refusalCounter) TokenRefused(context.Context, string)              { o.refused.Add(1) }
func (o *refusalCounter) Event(session.Event)                               {}
func (o *refusalCounter) Answered(context.Context, int)                     {}
func (o *refusalCounter) LiveSessions(func(context.Context) (int64, error)) {}

// TestUntouchedRequestReadsNoCookie: the credential is read on the
// session's first use, so a request whose handler never uses its session
// neither parses its cookie nor checks a signature (a forged cookie is not
// even refused), and one that does is refused once.
func TestUntouchedRequestReadsNoCookie(t *testing.T) {
	t.Parallel()
	observer := &refusalCounter{}
	ts := startServer(t, serverSetup{options: []session.Option{session.WithObserver(observer)}}, appHandler())
	forged := "session=" + strings.Repeat("A", 60)
	if resp, _ := rawCookieGet(t, ts, "/noop", forged); resp.StatusCode != http.StatusOK || len(resp.Header.Values("Set-Cookie")) > 0 || resp.Header.Get("Vary") != "" {
		t.Errorf("untouched request: status %d, Set-Cookie %q, Vary %q; want 200 and no session headers", resp.StatusCode, resp.Header.Values("Set-Cookie"), resp.Header.Get("Vary"))
	}
	if n := observer.refused.Load(); n != 0 {
		t.Errorf("an untouched request's forged cookie was checked: %d refusals", n)
	}
	rawCookieGet(t, ts, "/read", forged)
	if n := observer.refused.Load(); n != 1 {
		t.Errorf("a request that read its session with a forged cookie: %d refusals, want 1", n)
	}
}
