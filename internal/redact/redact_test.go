package redact

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestDatabaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url, want string
		secrets   []string
	}{
		{"postgres://app:hunter2@db.example.com:5433/app", "db.example.com:5433/app", []string{"hunter2", "app:"}},
		// The review's URL: an unencoded '@' and '#' in the password.
		{"postgres://app:Secr3t@Pr0d#2024@db.example.com/app", "db.example.com:5432/app", []string{"Secr3t", "Pr0d", "2024"}},
		{"postgresql://app:p@ss/w0rd@db.example.com/app", "db.example.com:5432/app", []string{"p@ss", "w0rd"}},
		{"postgres://app:a/b@db.example.com/app", "db.example.com:5432/app", []string{"a/b", "app:a"}},
		{"postgres://app@db.example.com/app?sslmode=disable&password=hunter2", "db.example.com:5432/app", []string{"hunter2"}},
		// An '@' in a query value is taken for part of the password: the
		// host is hidden with it.
		{"postgres://u:p@db.example.com/app?application_name=a@b", "b:5432/", []string{"db.example.com"}},
		{"host=db.example.com port=5433 dbname=app user=admin password=hunter2", "db.example.com:5433/app", []string{"hunter2"}},
		{"host=db.example.com dbname=app password='hun ter\\'2'", "db.example.com:5432/app", []string{"hun", "ter"}},
		{"postgres://admin:hunter2@db.example.com:notaport/app", "db.example.com:notaport/app", []string{"hunter2", "admin"}},
		{"host=db password=hunter2 sslmode=sometimes", "(unparsable DATABASE_URL)", []string{"hunter2"}},
	}
	for _, tt := range tests {
		got := DatabaseURL(tt.url)
		if got != tt.want {
			t.Errorf("DatabaseURL(%q) = %q, want %q", tt.url, got, tt.want)
		}
		for _, s := range tt.secrets {
			if strings.Contains(got, s) {
				t.Errorf("DatabaseURL(%q) = %q shows %q", tt.url, got, s)
			}
		}
	}
}

func TestMessage(t *testing.T) {
	t.Parallel()
	tests := []struct{ msg, want string }{
		// Structural: words that equal a password are left alone.
		{"failed to connect to `user=app database=app`: dial error", "failed to connect to `user=app database=app`: dial error"},
		{"hostname resolving error: lookup nosuch.invalid: no such host", "hostname resolving error: lookup nosuch.invalid: no such host"},
		{`FATAL: password authentication failed for user "app" (SQLSTATE 28P01)`, `FATAL: password authentication failed for user "app" (SQLSTATE 28P01)`},
		// pgx masks up to the first '@'; the rest of the password goes too.
		{"cannot parse `postgres://app:xxxxx@Pr0d#2024@db/app`: invalid port", "cannot parse `postgres://app:xxxxx@db/app`: invalid port"},
		{`parse "postgres://app:Hunter2%zz@db/app": invalid URL escape`, `parse "postgres://app:xxxxx@db/app": invalid URL escape`},
		{"dsn postgres://app:a/b@db/app failed", "dsn postgres://app:xxxxx@db/app failed"},
		{"postgres://app@db/app?sslmode=x&password=Hunter2&PassWord=x&sslpassword=y", "postgres://app@db/app?sslmode=x&password=xxxxx&PassWord=xxxxx&sslpassword=xxxxx"},
		{"postgres://app@db/app?pass%77ord=Hunter2", "postgres://app@db/app?pass%77ord=xxxxx"},
		{"cannot parse `host=db password=Hunter2 port=x`", "cannot parse `host=db password=xxxxx port=x`"},
		{"host=db password = 'a b\\' c' port=x", "host=db password = xxxxx port=x"},
		{"host=db sslpassword=Hunter2", "host=db sslpassword=xxxxx"},
		{"mypassword=kept", "mypassword=kept"},
		{"İİİ host=db PASSWORD=Hunter2 İ", "İİİ host=db PASSWORD=xxxxx İ"},
	}
	for _, tt := range tests {
		if got := Message(tt.msg); got != tt.want {
			t.Errorf("Message(%q)\n = %q\nwant %q", tt.msg, got, tt.want)
		}
	}
}

func TestURLProblem(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		url  string
		want string // a fragment of the problem, "" for none
	}{
		{"postgres://app:hunter2@db/app", ""},
		{"postgres://app:hun%40ter2@db/app", ""},
		{"postgres://app:a#b@db/app", ""},
		{"postgres://u:p@db/app?application_name=a@b", ""},
		{"host=db password=a@b@c", ""},
		{"postgres://app:Secr3t@Pr0d#2024@db/app", "%40"},
		{"postgres://app:5432/b@db/app", "%2F"},
	} {
		problem, fix := URLProblem(tt.url)
		got := problem + ": " + fix
		if (tt.want == "") != (problem == "") || !strings.Contains(got, tt.want) {
			t.Errorf("URLProblem(%q) = %q, want %q", tt.url, got, tt.want)
		}
		for _, s := range []string{"Secr3t", "Pr0d", "hunter2"} {
			if strings.Contains(got, s) {
				t.Errorf("URLProblem(%q) quotes it: %q", tt.url, got)
			}
		}
	}
}

func TestError(t *testing.T) {
	t.Parallel()
	inner := errors.New("cannot parse `postgres://app:xxxxx@Pr0d@db/app`")
	err := Error(fmt.Errorf("open: %w", inner))
	if !errors.Is(err, inner) || strings.Contains(err.Error(), "Pr0d") {
		t.Errorf("Error = %v; want the password masked and the chain kept", err)
	}
	if Error(nil) != nil {
		t.Error("Error(nil) is not nil")
	}
}

// TestMessageMasksEveryPasswordShape puts passwords with every character
// a paste can leave unencoded into URLs, and checks that none of the
// password's text survives Message, which is how the URL would be quoted
// in an error.
func TestMessageMasksEveryPasswordShape(t *testing.T) {
	t.Parallel()
	for _, password := range []string{"Secr3t@Pr0d#2024", "p@zq/w0rd", "a1/b2", "a3?b4@c5", "x6@y7?z8", "q9#r0", "k9:t7@u5", "5432/v1@w2"} {
		for _, tail := range []string{"/app", "/app?sslmode=disable", "", "?application_name=a@b", "/app?application_name=a@b"} {
			url := "postgres://app:" + password + "@db.example.com" + tail
			got := Message("cannot parse `" + url + "`: some error")
			for _, part := range strings.FieldsFunc(password, func(r rune) bool { return strings.ContainsRune("@/?#:", r) }) {
				if len(part) > 1 && strings.Contains(got, part) {
					t.Errorf("Message shows %q of password %q: %s", part, password, got)
				}
			}
			if display := DatabaseURL(url); strings.Contains(display, "Secr3t") || strings.Contains(display, "w0rd") || strings.Contains(display, "Pr0d") {
				t.Errorf("DatabaseURL(%q) = %q", url, display)
			}
		}
	}
}

// FuzzMessage: whatever the password, a message quoting the URL or the
// keyword string that holds it shows none of it, and Message never
// panics on any input.
func FuzzMessage(f *testing.F) {
	for _, s := range []string{"hunter2", "Secr3t@Pr0d#2024", "a/b@c", "x y", "'", "\\", "İ", "pass=word"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, password string) {
		_ = Message(password)
		if len(password) < 6 || strings.ContainsAny(password, " \t\n\r`\"<>'\\%") {
			return // not a password a URL or a bare keyword value can carry
		}
		for _, template := range []string{
			"cannot parse `postgres://app:%s@db.example.com/app`: invalid",
			"failed: host=db password=%s port=5432",
		} {
			quoted := fmt.Sprintf(template, password)
			// The text around the password may contain it ("passwor").
			if got := Message(quoted); strings.Count(got, password) > strings.Count(template, password) {
				t.Fatalf("Message(%q) = %q", quoted, got)
			}
		}
	})
}
