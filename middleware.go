package session

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
)

// Handler wraps next so that every request carries a Session
// (FromContext). The session is saved and its cookie set before the
// response's headers leave: on the first final WriteHeader, Write, Flush,
// Hijack or ReadFrom, or when next returns. If that save fails, the error
// handler answers instead and the handler's later writes are discarded.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st, ok := r.Context().Value(contextKey{}).(*sessionState); ok && st.b == &m.backend {
			next.ServeHTTP(w, r) // already wrapped by this Manager
			return
		}
		rq := &perRequest{}
		r = m.begin(r, rq)
		rq.writer = responseWriter{ResponseWriter: w, m: m, st: &rq.state, req: r}
		next.ServeHTTP(&rq.writer, r)
		rq.writer.commit()
	})
}

// perRequest is what a request needs, allocated in one piece.
type perRequest struct {
	state   sessionState
	session Session
	writer  responseWriter
}

// Begin attaches the request's session to r, for code that cannot wrap its
// handlers with Handler: a framework whose handlers do not take an
// http.ResponseWriter, or a WebSocket upgrade that must set the cookie on
// the handshake. It returns a shallow copy of r whose context carries the
// session (FromContext); nothing is read from the store until the session
// is used. Call Save before the response's headers are written.
func (m *Manager) Begin(r *http.Request) *http.Request {
	return m.begin(r, &perRequest{})
}

// begin binds rq's session to a copy of r. It reads nothing yet: the
// credential is read on the session's first use (introduce), so a request
// that never uses its session costs neither a cookie parse nor an HMAC.
func (m *Manager) begin(r *http.Request, rq *perRequest) *http.Request {
	st := &rq.state
	st.b = &m.backend
	st.unread.m, st.unread.r = m, r
	r = r.WithContext(context.WithValue(r.Context(), contextKey{}, st))
	rq.session = Session{sessionState: st, ctx: r.Context()}
	st.session = &rq.session
	return r
}

// Save stores the changes made to the session of r, a request returned by
// Begin, and sets the session's cookie, Vary and Cache-Control headers on
// w.Header(). Call it once, before the response's headers are written;
// later changes fail with ErrCommitted. If it fails, answer the request
// with the error, as Handler does through the error handler
// (DefaultErrorHandler, say).
func (m *Manager) Save(w http.ResponseWriter, r *http.Request) error {
	st, ok := r.Context().Value(contextKey{}).(*sessionState)
	if !ok || st.b != &m.backend {
		return errors.New("session: Save: the request carries no session of this Manager: pass the request Begin returned")
	}
	return m.save(w.Header(), r, st)
}

// save writes the session of r, then the headers that go with it. A
// session the handler never touched costs nothing and adds no header.
func (m *Manager) save(h http.Header, r *http.Request, st *sessionState) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil
	}
	if st.unread.m != nil {
		// Never used: nothing to read, save or send.
		st.unread.m, st.unread.r = nil, nil
		st.closed = true
		return nil
	}
	touched := st.status != unread || st.dirty() || st.unsaved != nil
	err := st.save(st.session.ctx)
	switch {
	case !touched:
		return nil
	case err != nil && st.degraded && st.status == failed && st.unsaved == nil:
		return nil // the handler was told, and answered without its session
	case err != nil:
		return err
	}
	cookie, header := m.cfg.TokenSource != "header", m.cfg.TokenSource != "cookie"
	if cookie {
		h.Add("Vary", "Cookie")
	}
	if header {
		h.Add("Vary", m.cfg.TokenHeader)
	}
	c := st.outcome()
	if c.expireLegacy {
		h.Add("Set-Cookie", m.expressCookie.expired(c.legacyAt).String())
	}
	if !c.expire && !c.send {
		if c.expireLegacy {
			h.Add("Cache-Control", `no-cache="Set-Cookie"`)
		}
		return nil
	}
	// Answer in the channel the request used; a new session in every one
	// the Manager reads.
	if presented := st.presented; presented.token != "" || presented.refusal != "" {
		cookie, header = cookie && !presented.inHeader, header && presented.inHeader
	}
	var value string
	if c.send {
		var err error
		if value, err = m.codec.sign(c.token); err != nil {
			return err
		}
	}
	if cookie {
		if c.expire {
			h.Add("Set-Cookie", m.cookies.expired().String())
		} else {
			h.Add("Set-Cookie", m.cookies.header(value, c.persistent, c.deadline, m.now()))
			if m.cookies.secure && !m.viaHTTPS(r) {
				m.warnPlainHTTP(r)
			}
		}
	}
	if cookie || c.expireLegacy {
		h.Add("Cache-Control", `no-cache="Set-Cookie"`)
	}
	if header {
		// An empty value tells the client to drop the token it holds.
		if value != "" && strings.EqualFold(m.cfg.TokenHeader, "Authorization") {
			value = "Bearer " + value
		}
		h.Set(m.cfg.TokenHeader, value)
		h.Add("Cache-Control", `no-cache="`+m.cfg.TokenHeader+`"`)
	}
	return nil
}

// viaHTTPS reports whether r reached the site over HTTPS: TLS to this
// server, or a proxy listed in Config.TrustedProxies saying so
// (X-Forwarded-Proto or Forwarded's proto).
func (m *Manager) viaHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if !m.cfg.trusted(r.RemoteAddr) {
		return false
	}
	if strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return true
	}
	forwarded := strings.ToLower(r.Header.Get("Forwarded"))
	return strings.Contains(forwarded, "proto=https") || strings.Contains(forwarded, `proto="https"`)
}

// warnPlainHTTP logs, once per host, that production sent a Secure cookie
// over plain HTTP: the browser drops it, and the user loops back to the
// sign-in page with nothing else to say why.
func (m *Manager) warnPlainHTTP(r *http.Request) {
	if _, warned := m.plainHTTP.LoadOrStore(r.Host, true); warned {
		return
	}
	m.logger.WarnContext(r.Context(), "session: production sent its Secure cookie on a request that arrived over plain HTTP; browsers drop it, so users are signed out at every request: serve the site over HTTPS, and if a TLS-terminating proxy forwards it, list the proxy in SESSION_TRUSTED_PROXIES so its X-Forwarded-Proto is believed (logged once per host)",
		"host", r.Host)
}

// errResponseAborted is returned by writes after the error handler has
// answered the request.
var errResponseAborted = errors.New("session: response replaced by the error handler because the session could not be saved")

// responseWriter saves the session before anything reaches the client.
type responseWriter struct {
	http.ResponseWriter
	m         *Manager
	st        *sessionState
	req       *http.Request
	committed bool
	failed    bool
}

// commit saves the session once. On failure the error handler writes the
// response, which is why the handler's own writes are dropped afterwards.
func (w *responseWriter) commit() {
	if w.committed {
		return
	}
	w.committed = true
	if err := w.m.save(w.ResponseWriter.Header(), w.req, w.st); err != nil {
		w.failed = true
		// The handler's headers describe the response it meant to send (a
		// Location, a Content-Disposition, a Cache-Control that lets a
		// shared cache keep the page); none of them fits the error.
		clear(w.ResponseWriter.Header())
		w.m.answer(w.ResponseWriter, w.req, err)
	}
}

// WriteHeader commits on a final status. Informational 1xx responses, such
// as 103 Early Hints, leave the headers open and do not count; 101
// Switching Protocols is final.
func (w *responseWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.commit()
	}
	if w.failed {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.commit()
	if w.failed {
		return 0, errResponseAborted
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps io.Copy's sendfile path available through the wrapper.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	w.commit()
	if w.failed {
		return 0, errResponseAborted
	}
	return io.Copy(w.ResponseWriter, src)
}

// Flush implements http.Flusher; it is a no-op when the underlying writer
// cannot flush.
func (w *responseWriter) Flush() {
	_ = w.FlushError()
}

// FlushError is what http.ResponseController.Flush calls.
func (w *responseWriter) FlushError() error {
	w.commit()
	if w.failed {
		return errResponseAborted
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker. The session is saved first, but its
// cookie is only in the header map, which a hijacked connection never
// writes: to set a cookie on a WebSocket handshake, use Begin and Save and
// hand the headers to the upgrader.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.commit()
	if w.failed {
		return nil, nil, errResponseAborted
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer for
// deadlines and full-duplex mode.
func (w *responseWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}
