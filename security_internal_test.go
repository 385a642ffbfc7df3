package session

import (
	"encoding/base64"
	"math"
	"testing"
	"testing/cryptotest"
	"time"
)

// TokenOfCookie returns the token a cookie value carries, for the external
// tests that check where tokens may and may not appear.
func TokenOfCookie(m *Manager, value string) (string, bool) {
	token, _, ok := m.codec.tokenOf(value)
	return token, ok
}

// SignToken returns a cookie value carrying token, signed with m's current
// secret as if issued at issued: a cookie the server could have sent, for a
// token the test chooses.
func SignToken(t *testing.T, m *Manager, token string, issued time.Time) string {
	return forgeCookie(t, m.cfg.CookieName, m.cfg.Secret, token, issued)
}

// TestTokensComeFromCryptoRand pins the token source to crypto/rand:
// replacing crypto/rand's source with a seeded one (cryptotest) must make
// the tokens repeat, which no other source would do. Not parallel:
// SetGlobalRandom affects the whole process.
func TestTokensComeFromCryptoRand(t *testing.T) {
	draw := func(seed uint64) []string {
		cryptotest.SetGlobalRandom(t, seed)
		return []string{newToken(), newToken(), newToken()}
	}
	first, again, other := draw(1), draw(1), draw(2)
	for i := range first {
		if first[i] != again[i] {
			t.Fatalf("token %d differs under the same crypto/rand seed (%q, %q): tokens do not come from crypto/rand", i, first[i], again[i])
		}
		if first[i] == other[i] {
			t.Fatalf("token %d is the same under different crypto/rand seeds: %q", i, first[i])
		}
	}
}

// TestTokenBitsAreBalanced checks that all 256 bits of a token vary: each
// bit position is set in about half of many tokens. A fixed, truncated or
// biased byte would push its positions far out of the binomial bounds.
func TestTokenBitsAreBalanced(t *testing.T) {
	t.Parallel()
	const draws = 4000
	var set [tokenBytes * 8]int
	for range draws {
		raw, err := base64.RawURLEncoding.DecodeString(newToken())
		if err != nil || len(raw) != tokenBytes {
			t.Fatalf("token decodes to %d bytes (%v), want %d", len(raw), err, tokenBytes)
		}
		for i := range set {
			if raw[i/8]&(1<<(i%8)) != 0 {
				set[i]++
			}
		}
	}
	// Six standard deviations: a false alarm about once in a hundred
	// million runs over all 256 positions.
	mean, bound := draws/2.0, 6*math.Sqrt(draws)/2
	for i, n := range set {
		if math.Abs(float64(n)-mean) > bound {
			t.Errorf("bit %d set in %d of %d tokens; want %v ± %.0f", i, n, draws, mean, bound)
		}
	}
}
