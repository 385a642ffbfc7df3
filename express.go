package session

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// This file reads what the Node app that Smart Scheduler ran on before this
// library left behind: express-session's signed connect.sid cookies and
// connect-pg-simple's rows, so its users can move over without signing in
// again. examples/express-legacy is that app, pinned; express_node_test.go
// checks everything here against it.

// maxExpressCookie bounds the cookie values verifyExpressCookie looks at, so
// a hostile value costs no decoding or HMAC. Browsers keep cookies to 4096
// bytes; express's own are about 80.
const maxExpressCookie = 4096

// verifyExpressCookie returns the session id in an express-session cookie
// value (connect.sid as the browser sends it) when one of secrets signed
// it, with the rules of express-session 1.19 and cookie-signature 1.0: the
// value is URL-decoded as decodeURIComponent does, must start with "s:",
// and the signature after its last '.' must be the unpadded standard base64
// of HMAC-SHA256(secret, sid), compared in constant time. Any secret may
// have signed it, as express verifies with all of its secrets.
//
// Anything else is ok == false, never a panic: the request has no express
// session. It refuses some values express would accept, none of which
// express itself ever issues: values over maxExpressCookie; a malformed
// %-escape, or escapes that decode to invalid UTF-8, where express falls
// back to verifying the undecoded text; raw bytes outside printable ASCII,
// which Node reads as Latin-1 (so a raw UTF-8 value fails in express too);
// and any cookie signed with an empty secret, since anyone can sign with
// it. express_node_test.go sends such values to express to hold both
// sides to this.
func verifyExpressCookie(value string, secrets []string) (sid string, ok bool) {
	if len(value) > maxExpressCookie {
		return "", false
	}
	decoded, ok := decodeURIComponent(value)
	if !ok {
		return "", false
	}
	signed, ok := strings.CutPrefix(decoded, "s:")
	if !ok {
		return "", false
	}
	dot := strings.LastIndexByte(signed, '.')
	// express treats an empty id as no cookie at all.
	if dot <= 0 {
		return "", false
	}
	sid, signature := signed[:dot], signed[dot+1:]
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		if hmac.Equal([]byte(signature), []byte(expressSignature(sid, secret))) {
			return sid, true
		}
	}
	return "", false
}

// signExpressCookie returns the cookie value express-session would issue for
// sid under secret, before URL encoding (encodeURIComponent gives the
// on-the-wire form): what an import writes to keep a session, or a test
// forges to stand in for express.
func signExpressCookie(sid, secret string) string {
	return "s:" + sid + "." + expressSignature(sid, secret)
}

// expressSignature is cookie-signature's: HMAC-SHA256 keyed with the
// secret's UTF-8 bytes, in standard base64 with its '=' padding stripped.
func expressSignature(sid, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(sid))
	return base64.RawStdEncoding.EncodeToString(mac.Sum(nil))
}

// uriUnreserved is the set of ASCII bytes encodeURIComponent leaves as they
// are.
const uriUnreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"

// encodeURIComponent escapes s as JavaScript's encodeURIComponent does,
// which is how express's cookie module writes every cookie value; Go's
// url.QueryEscape differs (it writes a space as '+' and escapes the
// exclamation mark, asterisk, apostrophe and parentheses). It escapes each
// byte of s that is not unreserved, so for valid UTF-8 the result is
// JavaScript's.
func encodeURIComponent(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte(uriUnreserved, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}

// decodeURIComponent undoes encodeURIComponent as JavaScript's
// decodeURIComponent does: ok is false, where JavaScript throws a URIError,
// for a '%' not followed by two hex digits and for escapes that decode to
// anything but UTF-8 (overlong forms and surrogates included). It also
// refuses raw bytes outside printable ASCII, which no encodeURIComponent
// output holds; see verifyExpressCookie. Go's url.PathUnescape accepts both
// invalid UTF-8 and control bytes, hence this.
func decodeURIComponent(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				return "", false
			}
		}
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			b = append(b, hi<<4|lo)
			i += 2
		case c < 0x20 || c > 0x7e:
			return "", false
		default:
			b = append(b, c)
		}
	}
	if !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

// unhex is the value of one hex digit, either case.
func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// expressSession is what the import needs from a connect-pg-simple row's
// sess column: JSON.stringify(req.session), a "cookie" object (express's
// cookie settings) followed by the app's own keys.
type expressSession struct {
	// values holds every top-level key but "cookie", as the JSON text
	// express wrote, so values move over without being reinterpreted
	// (passport's and connect-flash's keys included).
	values map[string]json.RawMessage
	// user is passport.user as text: a string as it is, a number as the
	// decimal JSON.stringify wrote; "" when nobody is signed in.
	user string
	// expires is sess.cookie.expires, zero for a browser-session cookie
	// (express's maxAge null), which has no expiry of its own.
	expires time.Time
	// cookiePath and cookieDomain are the attributes connect.sid was set
	// with; clearing it takes the same ones, or the browser keeps it.
	cookiePath, cookieDomain string
}

// persistent reports whether express gave the cookie an expiry, so the
// browser kept it across restarts; a session imported from a
// browser-session cookie must not become persistent.
func (s expressSession) persistent() bool { return !s.expires.IsZero() }

// errExpressSession marks a sess column this package cannot read, so the
// caller can tell a foreign row from a database error.
var errExpressSession = errors.New("session: unreadable express session")

// parseExpressSession reads a connect-pg-simple sess column. Keys are
// matched exactly, as JavaScript does (encoding/json would match
// "Cookie" to a field named cookie), and a repeated key keeps its last
// value, as JSON.parse does. Anything that is not a JSON object, or whose
// cookie or passport entries have types express and passport never write,
// is an error wrapping errExpressSession.
func parseExpressSession(sess []byte) (expressSession, error) {
	var s expressSession
	top, err := jsonObject(sess)
	if err != nil {
		return s, fmt.Errorf("%w: %v", errExpressSession, err)
	}
	if cookie, ok := top["cookie"]; ok {
		if err := s.readCookie(cookie); err != nil {
			return expressSession{}, err
		}
		delete(top, "cookie")
	}
	if passport, ok := top["passport"]; ok {
		if s.user, err = passportUser(passport); err != nil {
			return expressSession{}, err
		}
	}
	s.values = top
	return s, nil
}

// jsonObject decodes a JSON object's members, refusing every other JSON
// value (encoding/json decodes null into a nil map without complaint).
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("null, want a JSON object")
	}
	return m, nil
}

// readCookie takes expires, path and domain from express's cookie object,
// where an absent or null member means unset, as it does to express.
func (s *expressSession) readCookie(data json.RawMessage) error {
	if isJSONNull(data) {
		return nil
	}
	cookie, err := jsonObject(data)
	if err != nil {
		return fmt.Errorf("%w: cookie: %v", errExpressSession, err)
	}
	var expires string
	for _, m := range []struct {
		name string
		dst  *string
	}{{"expires", &expires}, {"path", &s.cookiePath}, {"domain", &s.cookieDomain}} {
		if err := jsonString(cookie[m.name], m.dst); err != nil {
			return fmt.Errorf("%w: cookie.%s: %v", errExpressSession, m.name, err)
		}
	}
	if expires == "" {
		return nil
	}
	// Date.prototype.toJSON writes ISO 8601 in UTC with milliseconds.
	if s.expires, err = time.Parse(time.RFC3339Nano, expires); err != nil {
		return fmt.Errorf("%w: cookie.expires: %v", errExpressSession, err)
	}
	return nil
}

// jsonString decodes a JSON string into dst, leaving it "" for an absent
// member or null.
func jsonString(data json.RawMessage, dst *string) error {
	if data == nil || isJSONNull(data) {
		return nil
	}
	return json.Unmarshal(data, dst)
}

// passportUser is passport.user as text. passport stores whatever the app's
// serializeUser returned: a string or a number in every app we know of;
// any other type is an error rather than a silently anonymous session.
func passportUser(data json.RawMessage) (string, error) {
	if isJSONNull(data) {
		return "", nil
	}
	passport, err := jsonObject(data)
	if err != nil {
		return "", fmt.Errorf("%w: passport: %v", errExpressSession, err)
	}
	user, ok := passport["user"]
	if !ok || isJSONNull(user) {
		return "", nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(user))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("%w: passport.user: %v", errExpressSession, err)
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		// JSON.stringify writes a number as String(n) does, which is the
		// text a Node app compared its user ids with.
		return v.String(), nil
	default:
		return "", fmt.Errorf("%w: passport.user is %T, want a string or a number", errExpressSession, v)
	}
}

// isJSONNull reports whether data is the JSON literal null.
func isJSONNull(data json.RawMessage) bool {
	return string(bytes.TrimSpace(data)) == "null"
}

// expiry is when the imported session ends: the cookie's own expiry when it
// has one, which connect-pg-simple also copies (rounded up to the second)
// into the row; for a browser-session cookie, rowExpire, the row's expire
// column read as expressRowQuery reads it. connect-pg-simple sets that, on
// every request that loads the session (express-session saves or touches
// it), to that moment plus its ttl (one day unless the app chose another),
// and stops loading the row after it: a browser left idle longer was
// signed out under Node too.
func (s expressSession) expiry(rowExpire time.Time) time.Time {
	if s.persistent() {
		return s.expires
	}
	return rowExpire
}

// expressRowQuery loads a live connect-pg-simple row by sid ($1), with its
// expire column as an instant. The table (%s) is the quoted, optionally
// schema-qualified name. $2 is the Node app's PostgreSQL TimeZone, which
// the import must be configured with (such as "Etc/UTC" or
// "America/New_York").
//
// Why $2: expire is a timestamp WITHOUT time zone. connect-pg-simple 10
// writes it as to_timestamp(n), n the expiry in Unix seconds rounded up
// (from sess.cookie.expires, or now plus its ttl for a browser-session
// cookie), and PostgreSQL stores that instant as wall-clock time in the
// TimeZone of the Node app's own connection. node-postgres sends no
// TimeZone when it connects, so that zone is the default of the app's
// role and database (ALTER ROLE / ALTER DATABASE ... SET TimeZone, else
// the server's timezone setting), unless the app's connection options
// (options= in its DATABASE_URL, or PGOPTIONS) set one. To find it, run
// SHOW TimeZone in psql connected as the app connects, with PGTZ unset.
// The Node process's own TZ plays no part: to_timestamp receives seconds,
// not a local date.
//
// So the import must not read expire as UTC (pgx scans a timestamp's
// wall-clock time as UTC), nor through its own connection's TimeZone,
// which pgx also takes from PGTZ and from timezone= in the URL, where
// node-postgres takes neither: "expire AT TIME ZONE $2" is the instant
// whatever the Go connection's TimeZone, and the liveness check is
// connect-pg-simple's own (expire >= now) in those terms. In a zone with
// daylight saving time the repeated hour of the autumn change is
// ambiguous: PostgreSQL reads it as the later instant, so a row expiring
// in it lives up to an hour longer, never shorter.
//
// express_node_test.go checks each of these statements against the real
// app: Node under TZ=UTC and TZ=America/New_York; PostgreSQL zones set by
// PGOPTIONS, by options= in the URL and by ALTER ROLE; a Go connection in
// a zone of its own; and rows an hour either side of expiry, on which the
// query and express agree.
const expressRowQuery = `SELECT sess, expire AT TIME ZONE $2 FROM %s WHERE sid = $1 AND expire AT TIME ZONE $2 >= now()`
