package entropy

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// TestPatterns checks that each kind of pattern is found and named. The
// review's table of weak secrets is judged through the library, in the
// session package's TestWeakSecretsRefused.
func TestPatterns(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ secret, pattern string }{
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "a run of one character"},
		{"abcabcabcabcabcabcabcabcabcabcabc", "a repeated block"},
		{"abcdefghijklmnopqrstuvwxyz0123456789", "an alphabetical or numerical sequence"},
		{"zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQ", "an alphabetical or numerical sequence"},
		{"qwertyuiopasdfghjklzxcvbnm", "a keyboard row"},
		{"!@#$%^&*()_+poiuytrewq", "a keyboard row"},
		{"supersecretsessionsecretkey", "a common word or placeholder"},
		{"Ch@ngeMe!", "a common word or placeholder"},
		{"yekterces", "a common word or placeholder"}, // "secretkey" backwards
	} {
		e := Of(tt.secret)
		if e.Bits >= 128 || !strings.Contains(strings.Join(e.Patterns, ", "), tt.pattern) {
			t.Errorf("Of(%q) = %.0f bits, %v; want under 128 bits and %q", tt.secret, e.Bits, e.Patterns, tt.pattern)
		}
	}
}

func TestRandomSecretsPass(t *testing.T) {
	t.Parallel()
	lowest := 1e9
	// sessionctl's own generator is tested a thousand times in
	// cmd/sessionctl; these are the other common ways to make a secret.
	for range 300 {
		b := make([]byte, 32)
		rand.Read(b)
		for _, s := range []string{base64.RawURLEncoding.EncodeToString(b), base64.StdEncoding.EncodeToString(b), hex.EncodeToString(b)} {
			e := Of(s)
			lowest = min(lowest, e.Bits)
			if e.Bits < 128 {
				t.Errorf("Of(random %q) = %.0f bits (%v), want at least 128", s, e.Bits, e.Patterns)
			}
		}
	}
	// 32 random characters of the four classes, the shortest a human
	// would make up (the package's tests use one).
	if e := Of("Zk3vQ9pL2mX7rT1wY8bN4cF6hJ0dS5gA"); e.Bits < 128 {
		t.Errorf("a 32-character mixed secret: %.0f bits (%v)", e.Bits, e.Patterns)
	}
	t.Logf("lowest estimate of 900 random secrets: %.0f bits", lowest)
}

func TestOfIsBounded(t *testing.T) {
	t.Parallel()
	// The worst inputs for the search: one character, and a short block,
	// repeated far past maxRunes. They must stay fast and weak.
	for _, s := range []string{strings.Repeat("a", 10000), strings.Repeat("ab", 5000), strings.Repeat("é", 1000)} {
		if e := Of(s); e.Bits > 40 {
			t.Errorf("Of(%.10q...) = %.0f bits", s, e.Bits)
		}
	}
	if e := Of(""); e.Bits != 0 || len(e.Patterns) != 0 {
		t.Errorf("Of(\"\") = %+v", e)
	}
}
