// Package redact keeps database passwords out of messages, for the session
// package and sessionctl alike.
//
// It works on the structure of connection strings, never by searching a
// message for the password's text: replacing every occurrence of a
// password garbles unrelated words ("user=xxxxx" when the password is the
// user name, "lookuxxxxx" when it is "p"), and misses the fragments a
// password with an unencoded '@' leaves in the host name. What it masks is
// the userinfo of a URL and the value of every password setting, wherever
// a connection string appears.
package redact

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// mask replaces a password.
const mask = "xxxxx"

// urlSchemes are the schemes of PostgreSQL connection URLs.
var urlSchemes = []string{"postgresql://", "postgres://"}

// userinfoEnd returns the index in rest, a URL after its "scheme://", of
// the '@' that ends the userinfo, or -1 when there is none.
//
// With one '@' there is no doubt. With more, the URL was pasted with an
// unencoded '@' (or a '/', '?' or '#' that moves the real one) in the
// password, and pgx, like libpq, would end the userinfo at the first '@'
// before the first '/': here the userinfo runs to the LAST '@', so that
// every byte of the password is masked. An '@' in a query value
// (application_name=a@b) then hides the host too: too much, never too
// little.
func userinfoEnd(rest string) int {
	return strings.LastIndexByte(rest, '@')
}

// cutScheme returns s without its PostgreSQL URL scheme, and whether it
// had one.
func cutScheme(s string) (scheme, rest string, ok bool) {
	for _, prefix := range urlSchemes {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			return prefix, rest, true
		}
	}
	return "", s, false
}

// withoutCredentials returns databaseURL with its userinfo and every
// password setting removed, so that whatever is derived from it for a
// message can hold nothing of the password.
func withoutCredentials(databaseURL string) string {
	scheme, rest, isURL := cutScheme(databaseURL)
	if !isURL {
		return maskKeywords(databaseURL, "")
	}
	if at := userinfoEnd(rest); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + maskQuery(rest, "")
}

// DatabaseURL returns host, port and database of a connection string for
// messages, such as "db.example.com:5432/app". It reads them from the
// string with its credentials removed, so no part of the user name or
// password can show, whatever characters the password holds.
func DatabaseURL(databaseURL string) string {
	clean := withoutCredentials(databaseURL)
	if cfg, err := pgconn.ParseConfig(clean); err == nil {
		return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	}
	if _, rest, isURL := cutScheme(clean); isURL && rest != "" {
		rest, _, _ = strings.Cut(rest, "?")
		return rest
	}
	return "(unparsable DATABASE_URL)"
}

// URLProblem returns why databaseURL, a connection URL, would not reach
// the database its author meant, and the fix, without quoting any of it;
// "" when there is nothing wrong of the kind.
func URLProblem(databaseURL string) (problem, fix string) {
	if _, rest, isURL := cutScheme(databaseURL); isURL {
		return urlProblem(rest)
	}
	return "", ""
}

// urlProblem is URLProblem for rest, a URL after its scheme. pgx ends the
// userinfo at the first '@' before the first '/', so an unencoded '@' in
// the password sends the rest of the password to DNS as a host name and
// into error messages; an '@' in the database name most likely belongs to
// a password whose unencoded '/' ended the host part early.
func urlProblem(rest string) (problem, fix string) {
	authority, path, _ := strings.Cut(rest, "/")
	path, _, _ = strings.Cut(path, "?")
	switch {
	case strings.Count(authority, "@") > 1:
		return "has more than one '@' before the host, so the password would be cut at its first '@' and the rest taken for the host name",
			"percent-encode every '@' in the user name and password as %40"
	case !strings.Contains(authority, "@") && strings.Contains(path, "@"):
		return "has an '@' after the first '/', so the host would be read from inside the user name or password",
			"percent-encode '/' in the password as %2F, and '@' as %40"
	}
	return "", ""
}

// Message returns msg with every password in it masked: the password in
// the userinfo of each PostgreSQL URL (see userinfoEnd), and the value of
// each password or sslpassword setting, in URL queries and in keyword/value
// strings. Nothing else in msg changes.
func Message(msg string) string {
	var b strings.Builder
	rest := msg
	for {
		start, scheme := -1, ""
		for _, s := range urlSchemes {
			if i := strings.Index(rest, s); i >= 0 && (start < 0 || i < start) {
				start, scheme = i, s
			}
		}
		if start < 0 {
			b.WriteString(maskKeywords(rest, mask))
			return b.String()
		}
		b.WriteString(maskKeywords(rest[:start], mask))
		rest = rest[start+len(scheme):]
		end := strings.IndexFunc(rest, endsURL)
		if end < 0 {
			end = len(rest)
		}
		b.WriteString(scheme)
		b.WriteString(maskURL(rest[:end]))
		rest = rest[end:]
	}
}

// endsURL reports whether r ends a URL quoted in a message. None of these
// may stand unencoded in a URL that pgx accepts.
func endsURL(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '`' || r == '"' || r == '<' || r == '>'
}

// maskURL masks the userinfo password and the password settings of the
// query of rest, a URL after its scheme.
func maskURL(rest string) string {
	prefix := ""
	if at := userinfoEnd(rest); at >= 0 {
		user, _, hasPassword := strings.Cut(rest[:at], ":")
		if i := strings.LastIndexByte(user, '@'); i >= 0 {
			// The '@' before the last belong to the password, or to a
			// user name too mangled to show.
			user = mask
		}
		prefix = user
		if hasPassword {
			prefix += ":" + mask
		}
		prefix += "@"
		rest = rest[at+1:]
	}
	return prefix + maskQuery(rest, mask)
}

// maskQuery replaces the value of each password setting in the query of
// rest (a URL after its userinfo) by replacement, or drops the setting when
// replacement is empty.
func maskQuery(rest, replacement string) string {
	base, query, ok := strings.Cut(rest, "?")
	if !ok {
		return rest
	}
	var kept []string
	for pair := range strings.SplitSeq(query, "&") {
		key, _, _ := strings.Cut(pair, "=")
		if isPasswordKey(key) {
			if replacement == "" {
				continue
			}
			pair = key + "=" + replacement
		}
		kept = append(kept, pair)
	}
	if len(kept) == 0 {
		return base
	}
	return base + "?" + strings.Join(kept, "&")
}

// isPasswordKey reports whether key, from a URL query, names a password
// setting; pgx decodes keys, so pass%77ord is one too.
func isPasswordKey(key string) bool {
	if decoded, err := url.QueryUnescape(key); err == nil {
		key = decoded
	}
	key = strings.ToLower(strings.TrimSpace(key))
	return key == "password" || key == "sslpassword"
}

// maskKeywords replaces the value of every password= and sslpassword=
// setting in s, a keyword/value connection string or a message quoting
// one, by replacement, or removes the setting when replacement is empty.
// A value is what libpq reads: a single-quoted string, in which a
// backslash escapes the next character, or everything up to white space.
func maskKeywords(s, replacement string) string {
	var b strings.Builder
	for {
		start, valueStart := passwordSetting(s)
		if start < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := valueEnd(s, valueStart)
		if replacement == "" {
			b.WriteString(strings.TrimRight(s[:start], " \t"))
		} else {
			b.WriteString(s[:valueStart])
			b.WriteString(replacement)
		}
		s = s[end:]
	}
}

// passwordSetting finds the first "password =" or "sslpassword =" setting in
// s that starts a word, and returns where it starts and where its value
// starts, or -1, -1.
func passwordSetting(s string) (start, value int) {
	for from := 0; ; {
		i := indexASCIIFold(s, from, "password")
		if i < 0 {
			return -1, -1
		}
		from = i + len("password")
		begin := i
		if begin >= 3 && strings.EqualFold(s[begin-3:begin], "ssl") {
			begin -= 3
		}
		if begin > 0 && isWordByte(s[begin-1]) {
			continue
		}
		j := from
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		if j == len(s) || s[j] != '=' {
			continue
		}
		j++
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		return begin, j
	}
}

// indexASCIIFold is the index of word, lower-case ASCII, in s from from
// on, ASCII letters matched in any case; -1 if absent. (strings.ToLower
// could change the length of s, and so every index into it.)
func indexASCIIFold(s string, from int, word string) int {
	for i := from; i+len(word) <= len(s); i++ {
		j := 0
		for j < len(word) && s[i+j]|0x20 == word[j] {
			j++
		}
		if j == len(word) {
			return i
		}
	}
	return -1
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// valueEnd returns where the value starting at i in s ends.
func valueEnd(s string, i int) int {
	if i < len(s) && s[i] == '\'' {
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '\\':
				j++
			case '\'':
				return j + 1
			}
		}
		return len(s)
	}
	end := strings.IndexAny(s[i:], " \t\n\r`\"")
	if end < 0 {
		return len(s)
	}
	return i + end
}

// Error returns err with its text passed through Message, for errors that
// may quote a connection string; errors.Is and errors.As still see err.
// It returns nil for nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: Message(err.Error()), err: err}
}

// WithText returns an error whose text is msg, already redacted by the
// caller (a Redis URL's password, say), while errors.Is and errors.As
// still see err.
func WithText(msg string, err error) error {
	return &redactedError{msg: msg, err: err}
}

// redactedError replaces the text of err, which might quote the connection
// string, by msg.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
