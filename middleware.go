package session

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
)

// Handler wraps next so that every request carries a Session
// (FromContext). The session is saved and its cookie set before the
// response's headers leave: on the first final WriteHeader, Write, Flush,
// Hijack or ReadFrom, or when next returns. If that save fails, the error
// handler answers instead and the handler's later writes are discarded.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st, ok := r.Context().Value(contextKey{}).(*sessionState); ok && st.m == m {
			next.ServeHTTP(w, r) // already wrapped by this Manager
			return
		}
		a := &perRequest{}
		st := &a.state
		st.m = m
		r = r.WithContext(context.WithValue(r.Context(), contextKey{}, st))
		st.req = r
		a.session = Session{sessionState: st, ctx: r.Context()}
		st.session = &a.session
		a.writer = responseWriter{ResponseWriter: w, session: &a.session, req: r}
		next.ServeHTTP(&a.writer, r)
		a.writer.commit()
	})
}

// perRequest is what Handler allocates for a request, in one allocation.
type perRequest struct {
	state   sessionState
	session Session
	writer  responseWriter
}

// errResponseAborted is returned by writes after the error handler has
// answered the request.
var errResponseAborted = errors.New("session: response replaced by the error handler because the session could not be saved")

// responseWriter commits the session before anything reaches the client.
type responseWriter struct {
	http.ResponseWriter
	session   *Session
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
	if err := w.session.commit(w.ResponseWriter); err != nil {
		w.failed = true
		// The handler's headers describe the response it meant to send (a
		// Location, a Content-Disposition, a Cache-Control that lets a
		// shared cache keep the page); none of them fits the error.
		clear(w.ResponseWriter.Header())
		w.session.m.errorHandler(w.ResponseWriter, w.req, err)
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

// Hijack implements http.Hijacker for WebSocket upgrades and the like. The
// session is saved first, but its cookie is only in the header map, which a
// hijacked connection never writes: make session changes (a sign-in, a
// Renew) in an ordinary request before upgrading.
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
