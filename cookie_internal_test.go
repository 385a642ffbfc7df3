package session

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNewToken(t *testing.T) {
	t.Parallel()
	const draws = 1000
	seen := make(map[string]bool, draws)
	for range draws {
		token := newToken()
		if len(token) != 43 {
			t.Fatalf("token %q has %d characters, want 43", token, len(token))
		}
		raw, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q decodes to %d bytes (%v), want 32", token, len(raw), err)
		}
		if !validToken(token) {
			t.Fatalf("validToken(%q) = false", token)
		}
		if seen[token] {
			t.Fatalf("token %q drawn twice in %d draws", token, draws)
		}
		seen[token] = true
	}
}

func TestValidToken(t *testing.T) {
	t.Parallel()
	token := newToken()
	tests := map[string]bool{
		token:                         true,
		"":                            false,
		token[:42]:                    false,
		token + "A":                   false,
		strings.Repeat("!", 43):       false,
		strings.Repeat("A", 42) + "=": false,
	}
	for in, want := range tests {
		if got := validToken(in); got != want {
			t.Errorf("validToken(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestStoreKey(t *testing.T) {
	t.Parallel()
	codec, err := newCookieCodec("session", time.Hour, "secret-for-the-store-key-test-0123456789", nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		token := newToken()
		key := storeKey(token)
		sum := sha256.Sum256([]byte(token))
		if key != hex.EncodeToString(sum[:]) {
			t.Fatalf("storeKey(%q) = %q, want the hex SHA-256 of the token", token, key)
		}
		if key == token || strings.Contains(key, token) {
			t.Fatalf("storeKey(%q) reveals the token", token)
		}
		value, err := codec.sign(token)
		if err != nil {
			t.Fatal(err)
		}
		inner, err := base64.URLEncoding.DecodeString(value)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(value, key) || strings.Contains(string(inner), key) {
			t.Fatalf("cookie %q carries the store key %q", value, key)
		}
	}
}

func TestCookieCodec(t *testing.T) {
	t.Parallel()
	const current, previous, retired = "current-secret-0123456789abcdefghij", "previous-secret-0123456789abcdefghi", "retired-secret-0123456789abcdefghij"
	codec := func(t *testing.T, name, secret string, previous ...string) *cookieCodec {
		t.Helper()
		c, err := newCookieCodec(name, time.Hour, secret, previous, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	token := newToken()
	reader := codec(t, "session", current, previous)
	tests := []struct {
		name        string
		signer      *cookieCodec
		wantOK      bool
		wantRotated bool
	}{
		{name: "current secret", signer: codec(t, "session", current), wantOK: true},
		{name: "previous secret", signer: codec(t, "session", previous), wantOK: true, wantRotated: true},
		{name: "retired secret", signer: codec(t, "session", retired)},
		{name: "other cookie name", signer: codec(t, "other", current)},
		{name: "reader signs with the current secret", signer: reader, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			value, err := tt.signer.sign(token)
			if err != nil {
				t.Fatal(err)
			}
			got, rotated, ok := reader.tokenOf(value)
			if ok != tt.wantOK || rotated != tt.wantRotated || (ok && got != token) {
				t.Errorf("decode = %q, rotated %v, ok %v; want ok %v, rotated %v", got, rotated, ok, tt.wantOK, tt.wantRotated)
			}
		})
	}
}

// forgeCookie builds a securecookie value by hand: base64("ts|payload|mac"),
// the MAC over "name|ts|payload", with the key the codec derives from
// secret. It lets a test choose the timestamp without sleeping.
func forgeCookie(t *testing.T, name, secret, payload string, timestamp time.Time) string {
	t.Helper()
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, hkdfInfo, 32)
	if err != nil {
		t.Fatal(err)
	}
	signed := fmt.Sprintf("%d|%s", timestamp.Unix(), base64.URLEncoding.EncodeToString([]byte(payload)))
	mac := hmac.New(sha256.New, key)
	io.WriteString(mac, name+"|"+signed)
	return base64.URLEncoding.EncodeToString(append([]byte(signed+"|"), mac.Sum(nil)...))
}

func TestCookieTimestamp(t *testing.T) {
	t.Parallel()
	const secret, previous = "timestamp-secret-0123456789abcdefghij", "previous-secret-0123456789abcdefghij"
	const lifetime = 24 * time.Hour
	m, err := New(context.Background(), Config{Secret: secret, PreviousSecrets: []string{previous}, Lifetime: lifetime},
		WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	token := newToken()
	rec := m.newRecord(time.Now())
	rec.Values = map[string]json.RawMessage{"color": json.RawMessage(`"blue"`)}
	if err := m.store.Insert(context.Background(), storeKey(token), rec); err != nil {
		t.Fatal(err)
	}
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		color, _ := Value[string](FromContext(r.Context()), "color")
		io.WriteString(w, color)
	}))

	now := time.Now()
	tests := []struct {
		name  string
		value string
		want  string
	}{
		{"issued now", forgeCookie(t, "session", secret, token, now), "blue"},
		{"issued within the lifetime", forgeCookie(t, "session", secret, token, now.Add(-lifetime+time.Minute)), "blue"},
		{"older than the lifetime", forgeCookie(t, "session", secret, token, now.Add(-lifetime-time.Minute)), ""},
		{"timestamp zero", forgeCookie(t, "session", secret, token, time.Unix(0, 0)), ""},
		{"previous secret, issued now", forgeCookie(t, "session", previous, token, now), "blue"},
		{"previous secret, older than the lifetime", forgeCookie(t, "session", previous, token, now.Add(-lifetime-time.Minute)), ""},
		{"signed payload that is not a token", forgeCookie(t, "session", secret, "not-a-token", now), ""},
		{"signed store key instead of the token", forgeCookie(t, "session", secret, storeKey(token), now), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, ok := m.codec.tokenOf(tt.value)
			if ok != (tt.want != "") {
				t.Errorf("decode ok = %v, want %v", ok, tt.want != "")
			}
			req := httptest.NewRequest("GET", "/", nil)
			req.AddCookie(&http.Cookie{Name: "session", Value: tt.value})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Body.String() != tt.want {
				t.Errorf("status %d, color %q; want 200, %q", rec.Code, rec.Body.String(), tt.want)
			}
		})
	}
}

func TestCookieTemplate(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tmpl := cookieTemplate{name: "__Host-session", secure: true, sameSite: http.SameSiteStrictMode}
	tests := []struct {
		name       string
		persistent bool
		expiry     time.Time
		wantMaxAge int
	}{
		{name: "persistent", persistent: true, expiry: now.Add(90 * time.Minute), wantMaxAge: 5400},
		{name: "rounds to the second", persistent: true, expiry: now.Add(90*time.Second + 400*time.Millisecond), wantMaxAge: 90},
		{name: "never Max-Age 0, which deletes", persistent: true, expiry: now.Add(100 * time.Millisecond), wantMaxAge: 1},
		{name: "browser session", expiry: now.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ck := tmpl.cookie("v", tt.persistent, tt.expiry, now)
			if ck.Name != "__Host-session" || ck.Path != "/" || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Domain != "" {
				t.Errorf("cookie %s lacks a template attribute", ck)
			}
			if ck.MaxAge != tt.wantMaxAge {
				t.Errorf("Max-Age = %d, want %d", ck.MaxAge, tt.wantMaxAge)
			}
			if tt.persistent != !ck.Expires.IsZero() || (tt.persistent && !ck.Expires.Equal(tt.expiry)) {
				t.Errorf("Expires = %v, want %v (persistent %v)", ck.Expires, tt.expiry, tt.persistent)
			}
			if err := ck.Valid(); err != nil {
				t.Errorf("invalid cookie: %v", err)
			}
		})
	}
	gone := tmpl.expired()
	if gone.MaxAge >= 0 || gone.Value != "" || !gone.Expires.Before(now) || gone.Path != "/" || !gone.Secure {
		t.Errorf("expired() = %s; want an empty, expired cookie with the same path and attributes", gone)
	}
}

// FuzzCookieDecode checks that no cookie value panics the decoder and that
// only values encode produced yield a token.
func FuzzCookieDecode(f *testing.F) {
	const secret, previous = "fuzz-secret-0123456789abcdefghijklmnop", "fuzz-previous-0123456789abcdefghijklm"
	codec, err := newCookieCodec("session", time.Hour, secret, []string{previous}, time.Now)
	if err != nil {
		f.Fatal(err)
	}
	oldCodec, err := newCookieCodec("session", time.Hour, previous, nil, time.Now)
	if err != nil {
		f.Fatal(err)
	}
	// Fixed tokens, so that values the fuzzer cached in earlier runs are
	// judged against the same set.
	issued := map[string]bool{}
	for i := range 3 {
		for j, c := range []*cookieCodec{codec, oldCodec} {
			sum := sha256.Sum256(fmt.Appendf(nil, "fuzz token %d/%d", i, j))
			token := base64.RawURLEncoding.EncodeToString(sum[:])
			value, err := c.sign(token)
			if err != nil {
				f.Fatal(err)
			}
			issued[token] = true
			f.Add(value)
			f.Add(value[:len(value)/2])
			f.Add(value + "A")
			f.Add(strings.ToUpper(value))
		}
	}
	f.Add("")
	f.Add("|||")
	f.Add("MTIzfGFiY3w=")
	f.Add(strings.Repeat("A", 5000))
	f.Add(base64.URLEncoding.EncodeToString([]byte("1|" + base64.URLEncoding.EncodeToString([]byte(newToken())) + "|")))
	f.Fuzz(func(t *testing.T, value string) {
		token, _, ok := codec.tokenOf(value)
		if !ok {
			if token != "" {
				t.Fatalf("decode(%q) failed but returned token %q", value, token)
			}
			return
		}
		if !issued[token] {
			t.Fatalf("decode(%q) accepted token %q that encode never signed", value, token)
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Cookie", "session="+value)
		if got := codec.tokenFrom(req); got.token != token {
			t.Fatalf("tokenFrom disagrees with decode for %q", value)
		}
	})
}

// TestVerifiedCookieCache checks the cache that spares a browser's repeated
// cookie the HMAC: only values that verified are kept, each for
// verifiedCacheTTL, and never more than verifiedCacheSize of them.
func TestVerifiedCookieCache(t *testing.T) {
	codec, err := newCookieCodec("session", time.Hour, "secret-for-the-cache-test-0123456789abcdef", nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	codec.now = func() time.Time { return now }
	token := newToken()
	value, err := codec.sign(token)
	if err != nil {
		t.Fatal(err)
	}

	if _, _, ok := codec.tokenOf(value[:len(value)-2]); ok || len(codec.verified) != 0 {
		t.Fatalf("a value that does not verify was accepted or cached (%d entries)", len(codec.verified))
	}
	if got, _, ok := codec.tokenOf(value); !ok || got != token {
		t.Fatalf("decode = %q, %v; want the token", got, ok)
	}
	if v, ok := codec.verified[value]; !ok || v.token != token || !v.until.Equal(now.Add(verifiedCacheTTL)) {
		t.Fatalf("cache entry = %+v, %v; want the token until now+TTL", v, ok)
	}

	// A cached entry past its TTL is verified afresh, not trusted: with the
	// entry poisoned, only a real verification returns the right token.
	codec.verified[value] = verifiedCookie{token: "poisoned", until: now.Add(verifiedCacheTTL)}
	if got, _, _ := codec.tokenOf(value); got != "poisoned" {
		t.Fatalf("within its TTL the cached entry was not used (got %q)", got)
	}
	now = now.Add(verifiedCacheTTL)
	if got, _, ok := codec.tokenOf(value); !ok || got != token {
		t.Fatalf("after the TTL decode = %q, %v; want the token verified again", got, ok)
	}

	for range verifiedCacheSize + 10 {
		v, err := codec.sign(newToken())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, ok := codec.tokenOf(v); !ok {
			t.Fatal("a fresh cookie does not verify")
		}
	}
	if n := len(codec.verified); n != verifiedCacheSize {
		t.Errorf("cache holds %d entries; want the cap, %d", n, verifiedCacheSize)
	}
}

// tokenOf is check for the tests that only ask whether a value verifies.
func (c *cookieCodec) tokenOf(value string) (token string, rotated bool, ok bool) {
	token, rotated, refusal := c.check(value)
	return token, rotated, refusal == ""
}

// TestCookieTemplateHeader checks the Set-Cookie the middleware writes,
// which cookieTemplate.header formats itself, against net/http's own
// formatting of the same cookie, for every attribute a Config can set.
func TestCookieTemplateHeader(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	codec, err := newCookieCodec("session", time.Hour, "cookie-template-secret-cookie-template", nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := codec.sign(newToken())
	if err != nil {
		t.Fatal(err)
	}
	local := time.FixedZone("UTC+5", 5*3600)
	for _, name := range []string{"session", "__Host-session", "sid"} {
		for _, domain := range []string{"", "example.com", ".example.com"} {
			for _, secure := range []bool{false, true} {
				for _, sameSite := range []http.SameSite{0, http.SameSiteDefaultMode, http.SameSiteLaxMode, http.SameSiteStrictMode, http.SameSiteNoneMode} {
					tmpl := newCookieTemplate(name, domain, secure, sameSite)
					for _, tt := range []struct {
						persistent bool
						expiry     time.Time
					}{
						{true, now.Add(90 * time.Minute)},
						{true, now.Add(90*time.Second + 400*time.Millisecond).In(local)},
						{true, now.Add(100 * time.Millisecond)},
						{false, now.Add(time.Hour)},
					} {
						got := tmpl.header(signed, tt.persistent, tt.expiry, now)
						want := tmpl.cookie(signed, tt.persistent, tt.expiry, now).String()
						if got != want {
							t.Errorf("header(%s, %s, secure %v, SameSite %v, persistent %v) =\n%s\nwant\n%s", name, domain, secure, sameSite, tt.persistent, got, want)
						}
					}
				}
			}
		}
	}
}
