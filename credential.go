package session

import (
	"log/slog"
	"net/http"
	"unicode/utf8"
)

// What a request presents, read on the session's first use: its token
// (Config.TokenSource), a legacy express-session cookie when an import is
// configured, and its device.

// introduce reads the credential of st's request, once, with st locked:
// the token (header or cookie), a legacy cookie when an import is
// configured, and the device.
func (m *Manager) introduce(st *sessionState) {
	r := st.unread.r
	st.unread.m, st.unread.r = nil, nil
	presented := m.credential(r)
	if presented.token == "" && m.expressCookie != nil {
		// Only now, and only when the import is configured: everyone
		// else's requests never parse another system's cookie.
		presented.legacy = m.expressCookie.sid(r)
	}
	if presented.refusal != "" && m.logger.Enabled(r.Context(), slog.LevelDebug) {
		m.logger.DebugContext(r.Context(), "session: ignoring a cookie that does not verify; starting a new session")
	}
	if warning := m.foreign.observe(m.now(), presented); warning != "" {
		m.logger.WarnContext(r.Context(), warning)
	}
	if presented.refusal != "" && m.observer != nil {
		m.observer.TokenRefused(r.Context(), presented.refusal)
	}
	st.init(&m.backend, presented, device{userAgent: userAgent(r), ip: m.cfg.clientIP(r)})
}

// credential reads the request's token from where Config.TokenSource says:
// the header first, then the cookie.
func (m *Manager) credential(r *http.Request) credential {
	var presented credential
	if m.cfg.TokenSource != "cookie" {
		presented = m.codec.tokenFromHeader(r, m.cfg.TokenHeader)
		if presented.token != "" || m.cfg.TokenSource == "header" {
			return presented
		}
	}
	fromCookie := m.codec.tokenFrom(r)
	if fromCookie.token == "" && presented.refusal != "" {
		return presented
	}
	return fromCookie
}

// maxUserAgent bounds what a session keeps of the User-Agent header: enough
// for any real browser's, not an arbitrary client's megabyte.
const maxUserAgent = 512

// userAgent is r's User-Agent, cut to maxUserAgent bytes on a character
// boundary.
func userAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) <= maxUserAgent {
		return ua
	}
	cut := maxUserAgent
	for cut > 0 && !utf8.RuneStart(ua[cut]) {
		cut--
	}
	return ua[:cut]
}
