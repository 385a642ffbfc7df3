package session

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/securecookie"
)

// tokenBytes is the entropy of a session token: 256 bits.
const tokenBytes = 32

// tokenLength is the length of a token in unpadded base64url.
var tokenLength = base64.RawURLEncoding.EncodedLen(tokenBytes)

// maxCookiesTried bounds how many same-named cookies a request may make us
// verify.
const maxCookiesTried = 4

// newToken returns a fresh random session token.
func newToken() string {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails; see crypto/rand.Read
	return base64.RawURLEncoding.EncodeToString(b)
}

// storeKey is what the Store sees instead of the token: its SHA-256, so a
// leaked table holds no usable credential.
func storeKey(token string) string {
	// A token is longer than the 32 bytes a []byte conversion may keep on
	// the stack; this buffer holds every token, and most other inputs.
	var buf [64]byte
	sum := sha256.Sum256(append(buf[:0], token...))
	var key [2 * sha256.Size]byte
	hex.Encode(key[:], sum[:])
	return string(key[:])
}

// validToken reports whether t has the shape newToken produces: 43
// characters of unpadded base64url. The last carries only 4 bits of the
// 32 bytes, so strict decoding also constrains it; checking the alphabet
// is enough here, since tokens are only ever compared by their hash.
func validToken(t string) bool {
	if len(t) != tokenLength {
		return false
	}
	for i := 0; i < len(t); i++ {
		switch b := t[i]; {
		case b >= 'A' && b <= 'Z', b >= 'a' && b <= 'z', b >= '0' && b <= '9', b == '-', b == '_':
		default:
			return false
		}
	}
	return true
}

// cookieCodec signs tokens into cookie values and verifies them, with one
// securecookie codec per secret: the current one first, then the previous
// ones, which verify but never sign.
type cookieCodec struct {
	name   string
	codecs []*securecookie.SecureCookie
	// now is the Manager's clock, for the cache's expiry.
	now func() time.Time

	mu       sync.RWMutex
	verified map[string]verifiedCookie // see remember
}

// verifiedCookie is a cookie value that verified, with what it decoded to.
type verifiedCookie struct {
	token   string
	rotated bool
	until   time.Time
}

// A browser sends the same cookie value with every request; remembering
// values that verified spares each request the base64 decoding and HMAC of
// securecookie (the largest cost of a session read after the database).
// Only values that verified are kept, for a minute, at most
// verifiedCacheSize of them.
const (
	verifiedCacheSize = 8192
	verifiedCacheTTL  = time.Minute
)

// hkdfInfo separates the signing key from any other use of the secret.
const hkdfInfo = "github.com/smartscheduler/session cookie signing key v1"

func newCookieCodec(name string, lifetime time.Duration, secret string, previous []string, now func() time.Time) (*cookieCodec, error) {
	c := &cookieCodec{name: name, now: now, verified: map[string]verifiedCookie{}}
	for _, s := range append([]string{secret}, previous...) {
		key, err := hkdf.Key(sha256.New, []byte(s), nil, hkdfInfo, 32)
		if err != nil {
			return nil, fmt.Errorf("session: deriving cookie key: %w", err)
		}
		// A nil block key: the token needs integrity, not secrecy from its
		// own holder. One codec per secret; an old secret is never passed
		// as a block key (see securecookie.CodecsFromPairs).
		sc := securecookie.New(key, nil)
		sc.MaxAge(int(lifetime / time.Second))
		sc.SetSerializer(securecookie.NopEncoder{})
		c.codecs = append(c.codecs, sc)
	}
	return c, nil
}

// sign signs token with the current secret.
func (c *cookieCodec) sign(token string) (string, error) {
	v, err := c.codecs[0].Encode(c.name, []byte(token))
	if err != nil {
		return "", fmt.Errorf("session: signing cookie: %w", err)
	}
	return v, nil
}

// Why a token was refused, as check reports it.
const (
	refusedMalformed = "malformed" // not a signed value of ours at all
	refusedSignature = "signature" // well-formed, signed with a secret none of ours
	refusedExpired   = "expired"   // ours, older than Config.Lifetime
)

// check verifies a token's signed value and returns the token. rotated is
// true when a previous secret verified it, so the caller re-issues it
// signed with the current one. refusal says why a value was refused (""
// when it was not): above all a value signed with a secret none of ours
// (refusedSignature), the mark of a SESSION_SECRET replaced without keeping
// the old one.
func (c *cookieCodec) check(value string) (token string, rotated bool, refusal string) {
	now := c.now()
	c.mu.RLock()
	v, hit := c.verified[value]
	c.mu.RUnlock()
	if hit && now.Before(v.until) {
		return v.token, v.rotated, ""
	}
	token, rotated, refusal = c.verify(value)
	if refusal == "" {
		c.remember(value, verifiedCookie{token: token, rotated: rotated, until: now.Add(verifiedCacheTTL)})
	}
	return token, rotated, refusal
}

// verify checks value's signature with each secret in turn, current first.
// securecookie checks the signature before the timestamp, so an expired
// value is one of ours.
func (c *cookieCodec) verify(value string) (token string, rotated bool, refusal string) {
	refusal = refusedSignature
	for i, sc := range c.codecs {
		var raw []byte
		err := sc.Decode(c.name, value, &raw)
		switch {
		case err == nil && validToken(string(raw)):
			return string(raw), i > 0, ""
		case err == nil:
			return "", false, refusedMalformed
		case strings.HasSuffix(err.Error(), "expired timestamp"):
			return "", false, refusedExpired
		case !errors.Is(err, securecookie.ErrMacInvalid):
			refusal = refusedMalformed
		}
	}
	return "", false, refusal
}

// remember caches a verified cookie value, evicting a random entry (map
// iteration order is random) when the cache is full.
func (c *cookieCodec) remember(value string, v verifiedCookie) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.verified) >= verifiedCacheSize {
		for old := range c.verified {
			delete(c.verified, old)
			break
		}
	}
	c.verified[value] = v
}

// credential is what a request presented: the token of a cookie (or
// header) that verified, or "", and whether a previous secret verified it;
// when none verified, why one presented was refused (see check).
type credential struct {
	token   string
	rotated bool
	refusal string
	// legacy is the session id of another system's cookie that verified
	// (express-session's connect.sid; see importer), read only when the
	// request has no native session cookie that verified.
	legacy string
	// inHeader reports that the token came in the token header
	// (Config.TokenHeader) rather than the cookie.
	inHeader bool
}

// tokenFrom returns the credential of the request's cookies of our name:
// the first that verifies, at most maxCookiesTried of them.
func (c *cookieCodec) tokenFrom(r *http.Request) credential {
	var presented credential
	for i, ck := range r.CookiesNamed(c.name) {
		if i == maxCookiesTried {
			break
		}
		token, rotated, refusal := c.check(ck.Value)
		if refusal == "" {
			return credential{token: token, rotated: rotated}
		}
		if presented.refusal != refusedSignature {
			presented.refusal = refusal
		}
	}
	return presented
}

// tokenFromHeader returns the credential the request's token header
// carries: header's value, or for Authorization the credentials of its
// Bearer scheme. A missing or empty header is no credential.
func (c *cookieCodec) tokenFromHeader(r *http.Request, header string) credential {
	value := r.Header.Get(header)
	if strings.EqualFold(header, "Authorization") {
		scheme, credentials, ok := strings.Cut(value, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			if value != "" {
				return credential{refusal: refusedMalformed, inHeader: true}
			}
			return credential{}
		}
		value = strings.TrimSpace(credentials)
	}
	if value == "" {
		return credential{}
	}
	token, rotated, refusal := c.check(value)
	return credential{token: token, rotated: rotated, refusal: refusal, inHeader: true}
}

// foreignCookies watches for cookies that are well-formed but signed with a
// secret this instance does not know. A few are noise (an old tab, a bot);
// most of a minute's cookies failing that way means SESSION_SECRET was
// replaced without keeping the old one, which signs everyone out, and an
// operator should hear of it once a minute rather than never.
type foreignCookies struct {
	verified atomic.Int64 // every request with a valid cookie counts: no lock
	mu       sync.Mutex
	foreign  int64
	since    time.Time // start of the window being counted
}

// foreignWindow is the window foreignCookies judges, and so the shortest
// gap between two warnings.
const foreignWindow = time.Minute

// observe counts one request's cookie. At the first foreign cookie after a
// window has passed it judges that window, and returns the warning to log
// when ten or more cookies were foreign and they outnumbered those that
// verified.
func (f *foreignCookies) observe(now time.Time, presented credential) (warning string) {
	switch {
	case presented.token != "":
		f.verified.Add(1)
		return ""
	case presented.refusal != refusedSignature:
		return ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.foreign++
	if f.since.IsZero() {
		f.since = now
	}
	if now.Sub(f.since) < foreignWindow {
		return ""
	}
	foreign, verified, since := f.foreign, f.verified.Swap(0), f.since
	f.foreign, f.since = 0, now
	if foreign < 10 || foreign <= verified {
		return ""
	}
	return fmt.Sprintf("session: %d of %d session cookies since %s were signed with a secret this instance does not know, so their users were signed out: if SESSION_SECRET was changed, keep the old one in SESSION_SECRET_PREVIOUS (sessionctl secret --rotate) until SESSION_LIFETIME has passed",
		foreign, foreign+verified, since.UTC().Format(time.TimeOnly))
}

// cookieTemplate is the set of attributes every session cookie carries.
type cookieTemplate struct {
	name     string
	domain   string
	secure   bool
	sameSite http.SameSite
	// path and flags are what http.Cookie.String writes of the template
	// before the expiry ("; Path=/; Domain=…") and after it ("; HttpOnly;
	// Secure; SameSite=…"): header writes them as they are.
	path, flags string
}

func newCookieTemplate(name, domain string, secure bool, sameSite http.SameSite) cookieTemplate {
	t := cookieTemplate{name: name, domain: domain, secure: secure, sameSite: sameSite}
	t.path = strings.TrimPrefix((&http.Cookie{Name: name, Path: "/", Domain: domain}).String(), name+"=")
	t.flags = strings.TrimPrefix((&http.Cookie{Name: name, HttpOnly: true, Secure: secure, SameSite: sameSite}).String(), name+"=")
	return t
}

// header returns the Set-Cookie header's value for a signed value, the
// same as cookie(value, …).String() without building the cookie and
// checking every byte of the value again on every response (a signed
// value is base64, each of its bytes valid in a cookie).
func (t cookieTemplate) header(value string, persistent bool, expiry, now time.Time) string {
	var b strings.Builder
	b.Grow(len(t.name) + len(value) + len(t.path) + len(t.flags) + 64)
	b.WriteString(t.name)
	b.WriteByte('=')
	b.WriteString(value)
	b.WriteString(t.path)
	if persistent {
		var buf [len(http.TimeFormat)]byte
		b.WriteString("; Expires=")
		b.Write(expiry.UTC().AppendFormat(buf[:0], http.TimeFormat))
		b.WriteString("; Max-Age=")
		b.Write(strconv.AppendInt(buf[:0], int64(maxAge(expiry, now)), 10))
	}
	b.WriteString(t.flags)
	return b.String()
}

// maxAge is the Max-Age of a persistent cookie that must last until
// expiry: never 0 or less, which would delete it.
func maxAge(expiry, now time.Time) int {
	return max(int(expiry.Sub(now).Round(time.Second)/time.Second), 1)
}

// cookie returns the Set-Cookie for value. A persistent cookie carries
// expiry, so the browser keeps it across restarts exactly as long as the
// server keeps the session.
func (t cookieTemplate) cookie(value string, persistent bool, expiry, now time.Time) *http.Cookie {
	ck := &http.Cookie{
		Name:     t.name,
		Value:    value,
		Path:     "/",
		Domain:   t.domain,
		Secure:   t.secure,
		HttpOnly: true,
		SameSite: t.sameSite,
	}
	if persistent {
		ck.Expires = expiry.UTC()
		ck.MaxAge = maxAge(expiry, now)
	}
	return ck
}

// expired returns a cookie that makes the browser delete ours.
func (t cookieTemplate) expired() *http.Cookie {
	ck := t.cookie("", false, time.Time{}, time.Time{})
	ck.Expires = time.Unix(1, 0)
	ck.MaxAge = -1
	return ck
}
