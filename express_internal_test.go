package session

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The vectors below were printed by express-session 1.19.0's own
// cookie-signature (1.0.7) and by Node 20's encodeURIComponent.
const (
	expressVectorSecret = "keyboard cat"
	expressVectorSID    = "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
	expressVectorSigned = "s:AbCdEfGhIjKlMnOpQrStUvWxYz012345.Rep3/Fvg0qav4rmx0KMMPMPLPqwiVeA7cAX7m1k6618"
	expressVectorWire   = "s%3AAbCdEfGhIjKlMnOpQrStUvWxYz012345.Rep3%2FFvg0qav4rmx0KMMPMPLPqwiVeA7cAX7m1k6618"
)

func TestExpressCookieVectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sid, secret, signed, wire string
	}{
		{expressVectorSID, expressVectorSecret, expressVectorSigned, expressVectorWire},
		{"PetZvuvQWbQUYUMu0lP3MmYAe6Z-sd06", "new-secret",
			"s:PetZvuvQWbQUYUMu0lP3MmYAe6Z-sd06.bNSfhw98DodsibasfumSovXCS08N1enDj/ZJLA8SRc0",
			"s%3APetZvuvQWbQUYUMu0lP3MmYAe6Z-sd06.bNSfhw98DodsibasfumSovXCS08N1enDj%2FZJLA8SRc0"},
		// A genid of the app's own: dots in the id, and non-ASCII.
		{"a.b.c", expressVectorSecret,
			"s:a.b.c.G8ReS2HiYVtvMBGFvZUGp5RaCauWFLUTjnnTm/EQ2aE",
			"s%3Aa.b.c.G8ReS2HiYVtvMBGFvZUGp5RaCauWFLUTjnnTm%2FEQ2aE"},
		{"ünï 💥", expressVectorSecret,
			"s:ünï 💥.ylu4T9uU2h5V6KYeu95s1UKO0iVP31tY+0zQIgfYloY",
			"s%3A%C3%BCn%C3%AF%20%F0%9F%92%A5.ylu4T9uU2h5V6KYeu95s1UKO0iVP31tY%2B0zQIgfYloY"},
	}
	for _, tt := range tests {
		if got := signExpressCookie(tt.sid, tt.secret); got != tt.signed {
			t.Errorf("signExpressCookie(%q) = %q, want %q", tt.sid, got, tt.signed)
		}
		if got := encodeURIComponent(tt.signed); got != tt.wire {
			t.Errorf("encodeURIComponent(%q) = %q, want %q", tt.signed, got, tt.wire)
		}
		if sid, ok := verifyExpressCookie(tt.wire, []string{tt.secret}); !ok || sid != tt.sid {
			t.Errorf("verifyExpressCookie(%q) = %q, %v; want %q, true", tt.wire, sid, ok, tt.sid)
		}
		// express also accepts the value unencoded; so do we, but for raw
		// non-ASCII, which express reads as Latin-1 (see verifyExpressCookie).
		ascii := !strings.ContainsFunc(tt.signed, func(r rune) bool { return r > 0x7e })
		if sid, ok := verifyExpressCookie(tt.signed, []string{tt.secret}); ok != ascii || (ok && sid != tt.sid) {
			t.Errorf("verifyExpressCookie(%q) = %q, %v; want ok %v", tt.signed, sid, ok, ascii)
		}
	}
}

func TestVerifyExpressCookieSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		secrets []string
		ok      bool
	}{
		{"only secret", []string{expressVectorSecret}, true},
		{"previous secret", []string{"new-secret", expressVectorSecret}, true},
		{"third of three", []string{"a", "b", expressVectorSecret}, true},
		{"other secret", []string{"new-secret"}, false},
		{"no secrets", nil, false},
		{"secret differing in case", []string{"Keyboard cat"}, false},
		{"secret with a trailing space", []string{"keyboard cat "}, false},
		{"empty secret", []string{""}, false},
	}
	for _, tt := range tests {
		sid, ok := verifyExpressCookie(expressVectorWire, tt.secrets)
		if ok != tt.ok || (ok && sid != expressVectorSID) {
			t.Errorf("%s: verifyExpressCookie = %q, %v; want ok %v", tt.name, sid, ok, tt.ok)
		}
	}
	// An empty secret signs like any other key; it must still verify nothing.
	if _, ok := verifyExpressCookie(encodeURIComponent(signExpressCookie("x", "")), []string{""}); ok {
		t.Error("a cookie signed with the empty secret verified")
	}
}

func TestVerifyExpressCookieAcceptsWhatExpressAccepts(t *testing.T) {
	t.Parallel()
	fits, _ := expressWiresAtBound(t)
	sign := func(sid string) string { return signExpressCookie(sid, expressVectorSecret) }
	tests := []struct {
		name, value, sid string
	}{
		{"lower-case escapes", strings.ReplaceAll(strings.ReplaceAll(expressVectorWire, "%3A", "%3a"), "%2F", "%2f"), expressVectorSID},
		{"escaped unreserved bytes", strings.ReplaceAll(expressVectorWire, "b", "%62"), expressVectorSID},
		{"percent sign in the id", encodeURIComponent(sign("100%")), "100%"},
		{"escaped control byte in the id", encodeURIComponent(sign("a\x00b")), "a\x00b"},
		{"longest value", fits, ""},
	}
	for _, tt := range tests {
		if tt.sid == "" {
			decoded, _ := decodeURIComponent(tt.value)
			tt.sid = decoded[len("s:"):strings.LastIndexByte(decoded, '.')]
		}
		if sid, ok := verifyExpressCookie(tt.value, []string{expressVectorSecret}); !ok || sid != tt.sid {
			t.Errorf("%s: verifyExpressCookie(%q) = %q, %v; want %q, true", tt.name, tt.value, sid, ok, tt.sid)
		}
	}
}

// expressWiresAtBound returns two signed cookies for runs of 'a's: the
// longest whose wire form fits maxExpressCookie, and the next, which does
// not. (The signature's '+' and '/' make the escaped length vary.)
func expressWiresAtBound(t *testing.T) (fits, over string) {
	t.Helper()
	for n := maxExpressCookie - 200; n < maxExpressCookie; n++ {
		wire := encodeURIComponent(signExpressCookie(strings.Repeat("a", n), expressVectorSecret))
		if len(wire) > maxExpressCookie {
			return fits, wire
		}
		fits = wire
	}
	t.Fatal("no signed cookie crosses maxExpressCookie")
	return "", ""
}

func TestVerifyExpressCookieRefusesHostileValues(t *testing.T) {
	t.Parallel()
	_, over := expressWiresAtBound(t)
	sign := func(sid string) string { return signExpressCookie(sid, expressVectorSecret) }
	sig := strings.TrimPrefix(expressVectorSigned, "s:"+expressVectorSID+".")
	tests := []struct {
		name, value string
	}{
		{"empty", ""},
		{"prefix only", "s:"},
		{"prefix and dot", "s:."},
		{"empty id, valid signature", sign("")},
		{"no s: prefix", strings.TrimPrefix(expressVectorSigned, "s:")},
		{"upper-case S: prefix", "S" + strings.TrimPrefix(expressVectorSigned, "s")},
		{"j: prefix (cookie-parser JSON)", "j" + strings.TrimPrefix(expressVectorSigned, "s")},
		{"space before the prefix", " " + expressVectorSigned},
		{"no dot", "s:" + expressVectorSID + sig},
		{"no signature", "s:" + expressVectorSID + "."},
		{"signature only", "s:." + sig},
		{"extra dot after the signature", expressVectorSigned + "."},
		{"extra part after the signature", expressVectorSigned + ".x"},
		{"dots after a valid signature", sign("a") + ".b"},
		{"padded signature", expressVectorSigned + "="},
		{"url-safe base64", strings.ReplaceAll(expressVectorSigned, "/", "_")},
		{"signature truncated", expressVectorSigned[:len(expressVectorSigned)-1]},
		{"signature one bit off", expressVectorSigned[:len(expressVectorSigned)-1] + "9"},
		{"signature not base64", "s:" + expressVectorSID + ".!!!!"},
		{"signature of another id", "s:" + expressVectorSID + "X." + sig},
		{"trailing space", expressVectorSigned + " "},
		{"lone percent", expressVectorWire + "%"},
		{"short escape", expressVectorWire + "%4"},
		{"non-hex escape", "s%3G" + expressVectorWire[4:]},
		{"escape of invalid UTF-8", encodeURIComponent(sign("a")) + "%C3%28"},
		{"escape of a surrogate", encodeURIComponent(sign("\xed\xa0\x80"))},
		{"escape of an overlong NUL", encodeURIComponent(sign("\xc0\x80"))},
		{"escape of a lone continuation byte", encodeURIComponent(sign("\x80"))},
		{"raw UTF-8 id, correctly signed", sign("ünï")},
		{"raw Latin-1 byte", "s:\xe9." + sig},
		{"raw NUL", "s:a\x00b." + sign("a\x00b")[len("s:a\x00b."):]},
		{"raw newline", expressVectorSigned + "\n"},
		{"just over the bound, correctly signed", over},
		{"8 KB, correctly signed", encodeURIComponent(sign(strings.Repeat("a", 8<<10)))},
		{"8 KB of escapes", strings.Repeat("%", 8<<10)},
		{"8 KB of dots", "s:" + strings.Repeat(".", 8<<10)},
	}
	for _, tt := range tests {
		if sid, ok := verifyExpressCookie(tt.value, []string{"new-secret", expressVectorSecret}); ok {
			t.Errorf("%s: verifyExpressCookie(%q) = %q, true; want not ok", tt.name, tt.value, sid)
		}
	}
}

func TestEncodeURIComponent(t *testing.T) {
	t.Parallel()
	// JavaScript's answers, printed by Node 20.
	const in = "s:a b/c+d!*'()~-_.é€😀%;,="
	const want = "s%3Aa%20b%2Fc%2Bd!*'()~-_.%C3%A9%E2%82%AC%F0%9F%98%80%25%3B%2C%3D"
	if got := encodeURIComponent(in); got != want {
		t.Errorf("encodeURIComponent(%q) = %q, want %q", in, got, want)
	}
	if got, ok := decodeURIComponent(want); !ok || got != in {
		t.Errorf("decodeURIComponent(%q) = %q, %v; want %q, true", want, got, ok, in)
	}
	if got, ok := decodeURIComponent("%e2%82%ac"); !ok || got != "€" {
		t.Errorf(`decodeURIComponent("%%e2%%82%%ac") = %q, %v; want "€", true`, got, ok)
	}
	// Each of these throws a URIError in JavaScript.
	for _, bad := range []string{"%", "%4", "%zz", "%C3%28", "%ED%A0%80", "%C0%80", "%F4%90%80%80", "%C3"} {
		if got, ok := decodeURIComponent(bad); ok {
			t.Errorf("decodeURIComponent(%q) = %q, true; want not ok", bad, got)
		}
	}
}

func FuzzVerifyExpressCookie(f *testing.F) {
	for _, seed := range []string{
		expressVectorWire, expressVectorSigned, "", "s:", "s:.", "%", "%C3%28",
		encodeURIComponent(signExpressCookie("ünï 💥", expressVectorSecret)),
		encodeURIComponent(signExpressCookie("a.b.c", expressVectorSecret)),
	} {
		f.Add(seed)
	}
	secrets := []string{expressVectorSecret}
	f.Fuzz(func(t *testing.T, value string) {
		sid, ok := verifyExpressCookie(value, secrets)
		if ok {
			// Whatever verifies is exactly what express would have issued
			// for its id, up to the choice of escapes.
			decoded, _ := decodeURIComponent(value)
			if want := signExpressCookie(sid, expressVectorSecret); decoded != want {
				t.Fatalf("%q verified as %q, but decodes to %q, not the signed %q", value, sid, decoded, want)
			}
			if again, ok := verifyExpressCookie(encodeURIComponent(decoded), secrets); !ok || again != sid {
				t.Fatalf("re-encoded %q verified as %q, %v; want %q", value, again, ok, sid)
			}
		}
		// The input as an id: every id express could issue (non-empty
		// text) comes back from its own cookie, within the length bound.
		// Longer ids cannot fit it (TestVerifyExpressCookieRefusesHostileValues
		// covers the bound).
		if value == "" || !utf8.ValidString(value) || len(value) > maxExpressCookie {
			return
		}
		wire := encodeURIComponent(signExpressCookie(value, expressVectorSecret))
		got, ok := verifyExpressCookie(wire, secrets)
		if want := len(wire) <= maxExpressCookie; ok != want || (ok && got != value) {
			t.Fatalf("id %q: verifyExpressCookie(%q) = %q, %v; want ok %v", value, wire, got, ok, want)
		}
	})
}

// expressRowSess is a sess column as connect-pg-simple wrote it for a
// remembered sign-in through examples/express-legacy.
const expressRowSess = `{"cookie":{"originalMaxAge":1209600000,"expires":"2026-12-14T06:14:28.277Z","secure":false,"httpOnly":true,"path":"/","sameSite":"lax"},"passport":{"user":"ada"},"visits":2,"flash":{"info":["Welcome back, ada"]}}`

func TestParseExpressSession(t *testing.T) {
	t.Parallel()
	remembered := time.Date(2026, 12, 14, 6, 14, 28, 277e6, time.UTC)
	tests := []struct {
		name       string
		sess       string
		user       string
		expires    time.Time
		path       string
		domain     string
		values     map[string]string
		persistent bool
	}{
		{
			name: "remembered sign-in", sess: expressRowSess,
			user: "ada", expires: remembered, path: "/", persistent: true,
			values: map[string]string{"passport": `{"user":"ada"}`, "visits": `2`, "flash": `{"info":["Welcome back, ada"]}`},
		},
		{
			name: "browser-session cookie",
			sess: `{"cookie":{"originalMaxAge":null,"expires":null,"secure":false,"httpOnly":true,"path":"/app","sameSite":"lax","domain":"example.com"},"passport":{"user":"ada"}}`,
			user: "ada", path: "/app", domain: "example.com",
			values: map[string]string{"passport": `{"user":"ada"}`},
		},
		{
			name: "numeric user", sess: `{"cookie":{"expires":null},"passport":{"user":42}}`,
			user: "42", values: map[string]string{"passport": `{"user":42}`},
		},
		{
			// JSON.stringify(1e21) and of a float: the text String(n) gives.
			name: "large numeric user", sess: `{"passport":{"user":1e+21}}`,
			user: "1e+21", values: map[string]string{"passport": `{"user":1e+21}`},
		},
		{
			name: "fractional user", sess: `{"passport":{"user":0.1}}`,
			user: "0.1", values: map[string]string{"passport": `{"user":0.1}`},
		},
		{
			name: "no cookie object", sess: `{"visits":1}`,
			values: map[string]string{"visits": `1`},
		},
		{
			name: "null cookie and passport", sess: `{"cookie":null,"passport":null}`,
			values: map[string]string{"passport": `null`},
		},
		{
			name: "signed out: passport without user", sess: `{"cookie":{},"passport":{}}`,
			values: map[string]string{"passport": `{}`},
		},
		{
			name: "null user", sess: `{"passport":{"user":null}}`,
			values: map[string]string{"passport": `{"user":null}`},
		},
		{
			name: "empty object", sess: `{}`, values: map[string]string{},
		},
		{
			// JavaScript keys are case-sensitive: these are app values.
			name: "keys differing in case", sess: `{"Cookie":{"expires":"2026-12-14T06:14:28.277Z"},"Passport":{"user":"eve"},"passport":{"USER":"eve"}}`,
			values: map[string]string{"Cookie": `{"expires":"2026-12-14T06:14:28.277Z"}`, "Passport": `{"user":"eve"}`, "passport": `{"USER":"eve"}`},
		},
		{
			// JSON.parse keeps the last of repeated keys.
			name: "repeated keys", sess: `{"passport":{"user":"eve"},"passport":{"user":"ada"}}`,
			user: "ada", values: map[string]string{"passport": `{"user":"ada"}`},
		},
		{
			name: "whitespace and unicode", sess: " {\n \"cookie\" : { \"expires\" : \"2026-12-14T06:14:28.277Z\" } , \"名前\" : \"ünï 💥\" } ",
			expires: remembered, persistent: true,
			values: map[string]string{"名前": `"ünï 💥"`},
		},
	}
	for _, tt := range tests {
		s, err := parseExpressSession([]byte(tt.sess))
		if err != nil {
			t.Errorf("%s: parseExpressSession: %v", tt.name, err)
			continue
		}
		if s.user != tt.user || !s.expires.Equal(tt.expires) || s.persistent() != tt.persistent || s.cookiePath != tt.path || s.cookieDomain != tt.domain {
			t.Errorf("%s: got user %q, expires %v, persistent %v, path %q, domain %q; want %q, %v, %v, %q, %q",
				tt.name, s.user, s.expires, s.persistent(), s.cookiePath, s.cookieDomain, tt.user, tt.expires, tt.persistent, tt.path, tt.domain)
		}
		got := map[string]string{}
		for k, v := range s.values {
			got[k] = string(v)
		}
		if !maps.Equal(got, tt.values) {
			t.Errorf("%s: values = %v, want %v", tt.name, got, tt.values)
		}
	}
}

func TestParseExpressSessionErrors(t *testing.T) {
	t.Parallel()
	for _, sess := range []string{
		``, ` `, `{`, `{"cookie":}`, `{"a":1}x`, "\x00",
		`null`, `[]`, `"s"`, `42`, `true`,
		`{"cookie":"x"}`, `{"cookie":[]}`,
		`{"cookie":{"expires":5}}`, `{"cookie":{"expires":"tomorrow"}}`, `{"cookie":{"expires":"+010000-01-01T00:00:00.000Z"}}`,
		`{"cookie":{"path":1}}`, `{"cookie":{"domain":{}}}`,
		`{"passport":"ada"}`, `{"passport":[]}`,
		`{"passport":{"user":{"id":1}}}`, `{"passport":{"user":["ada"]}}`, `{"passport":{"user":true}}`,
	} {
		s, err := parseExpressSession([]byte(sess))
		if err == nil {
			t.Errorf("parseExpressSession(%q) = %+v, nil; want an error", sess, s)
			continue
		}
		if !errors.Is(err, errExpressSession) {
			t.Errorf("parseExpressSession(%q) error %v does not wrap errExpressSession", sess, err)
		}
	}
}

func TestParseExpressSessionKeepsValuesApart(t *testing.T) {
	t.Parallel()
	sess := []byte(expressRowSess)
	s, err := parseExpressSession(sess)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sess {
		sess[i] = 'x'
	}
	if got := string(s.values["visits"]); got != "2" {
		t.Errorf("values[visits] = %q after the input was overwritten; the values alias the input", got)
	}
	keys := slices.Sorted(maps.Keys(s.values))
	if !slices.Equal(keys, []string{"flash", "passport", "visits"}) {
		t.Errorf("values keys = %v", keys)
	}
	var flash map[string][]string
	if err := json.Unmarshal(s.values["flash"], &flash); err != nil || !slices.Equal(flash["info"], []string{"Welcome back, ada"}) {
		t.Errorf("flash = %v, %v", flash, err)
	}
}

func TestExpressSessionExpiry(t *testing.T) {
	t.Parallel()
	row := time.Date(2026, 12, 1, 6, 14, 29, 0, time.UTC)
	cookie := time.Date(2026, 12, 14, 6, 14, 28, 277e6, time.UTC)
	if got := (expressSession{expires: cookie}).expiry(row); !got.Equal(cookie) {
		t.Errorf("persistent cookie: expiry = %v, want the cookie's %v", got, cookie)
	}
	if got := (expressSession{}).expiry(row); !got.Equal(row) {
		t.Errorf("browser-session cookie: expiry = %v, want the row's %v", got, row)
	}
}
