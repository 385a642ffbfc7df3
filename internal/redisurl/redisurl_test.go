package redisurl

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		cluster bool
		want    string // Where, or the start of the error
		isErr   bool
	}{
		{url: "redis://cache:6380/2", want: "redis cache:6380 database 2"},
		{url: "redis://:pw@cache", want: "redis cache:6379 database 0"},
		{url: "rediss://user:pw@cache:6380/1", want: "redis cache:6380 database 1"},
		{url: "redis://a:7000?addr=b:7000&addr=c:7000", want: "redis cluster a:7000, b:7000, c:7000"},
		{url: "redis://a:7000?cluster=true", want: "redis cluster a:7000"},
		{url: "redis://a:7000", cluster: true, want: "redis cluster a:7000"},
		{url: "redis://a:7000?cluster=false", want: "redis a:7000 database 0"},
		{url: "redis://a:7000/3?cluster=true", want: "names database 3, but a Redis Cluster", isErr: true},
		{url: "redis://a:7000?cluster=maybe", want: `has cluster="maybe"`, isErr: true},
		{url: "postgres://db/app", want: `has scheme "postgres"`, isErr: true},
		{url: "redis:///0", want: "names no host", isErr: true},
		{url: "redis://cache:6379/x", want: "invalid database number", isErr: true},
		{url: "redis://cache:6379?colour=blue", want: "unexpected option: colour", isErr: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.url, tt.cluster)
		switch {
		case tt.isErr && (err == nil || !strings.HasPrefix(err.Error(), tt.want) && !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Parse(%q) = %v; want an error saying %q", tt.url, err, tt.want)
		case !tt.isErr && err != nil:
			t.Errorf("Parse(%q): %v", tt.url, err)
		case !tt.isErr && got.Where != tt.want:
			t.Errorf("Parse(%q).Where = %q; want %q", tt.url, got.Where, tt.want)
		}
	}
}

// TestParseHidesThePassword feeds passwords that URLs must escape, raw and
// escaped: no error and no description shows them, or any part of them.
func TestParseHidesThePassword(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://app:p@ss#w%rd@cache:6379/0",
		"redis://app:p%40ss%23w%25rd@cache:6379/x",
		"redis://app:p%40ss%23w%25rd@cache:6379?bogus=1",
		"redis://app:p@ss@cache:6379/0?cluster=yes",
		"redis://app:p@ss%zz@cache:6379/0",
	} {
		_, err := Parse(raw, false)
		texts := []string{Describe(raw, false)}
		if err != nil {
			texts = append(texts, err.Error())
		}
		for _, text := range texts {
			for _, secret := range []string{"p@ss", "ss#w", "w%rd", "p%40ss", "%25rd", "ss%zz"} {
				if strings.Contains(text, secret) {
					t.Errorf("Parse(%q): %q shows %q", raw, text, secret)
				}
			}
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	const raw = "redis://app:p%40ss%23w@cache:6379/0"
	msg := "WRONGPASS for p@ss#w at " + raw + " (p%40ss%23w)"
	got := Redact(msg, raw)
	for _, secret := range []string{"p@ss#w", "p%40ss%23w"} {
		if strings.Contains(got, secret) {
			t.Errorf("Redact left %q in %q", secret, got)
		}
	}
}
